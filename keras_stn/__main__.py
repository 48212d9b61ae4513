"""`python -m keras_stn ...` runs the `keras-stn` command."""

import sys

from keras_stn import cli

sys.exit(cli.main())
