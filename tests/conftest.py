import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Runs in a subprocess under the JAX backend (backend_test.py); importing it
# here would switch this process's backend.
collect_ignore = ["ops/jax_worker.py"]
