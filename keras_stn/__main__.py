"""`python -m keras_stn ...` runs the `keras-stn` command."""

import sys

import keras_stn_cli

sys.exit(keras_stn_cli.main())
