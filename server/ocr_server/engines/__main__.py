"""`python -m ocr_server.engines ...` entry point."""
import sys

from ocr_server.engines.cli import main

sys.exit(main())
