"""`python -m trt_build ...` entry point."""
import sys

from trt_build.cli import main

sys.exit(main())
