"""`python -m agnews.bench`: the speed comparison with the notebook, or with --gpu-check the GPU check."""

import sys

from agnews.bench.speed import main

if __name__ == "__main__":
    sys.exit(main())
