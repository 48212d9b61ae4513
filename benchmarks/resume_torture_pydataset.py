"""`resume_torture.py` for the TensorFlow-free data source under PyTorch.

Kills `keras-stn train --data-source pydataset` (KERAS_BACKEND=torch) with
SIGINT or SIGKILL at random moments and resumes it until it finishes;
every finished run must equal an uninterrupted one bit for bit (results
and weights). Options as `resume_torture.py`'s; the defaults are the
backend, the source, ST-FCN (the smallest network with a transformer) and
a 3-minute budget. Needs no TensorFlow.

    python benchmarks/resume_torture_pydataset.py --minutes 3 \\
        --manual-dir ../shared/data/mnist

Exit status 0 when every trial matched, 1 otherwise.
"""

import sys

import resume_torture

if __name__ == "__main__":
    sys.exit(
        resume_torture.main(
            backend="torch",
            data_source="pydataset",
            model="st-fcn",
            minutes=3.0,
        )
    )
