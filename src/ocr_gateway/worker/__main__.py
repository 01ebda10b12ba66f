"""`python -m ocr_gateway.worker [--processes N] [--engine NAME]`."""

import sys

from ocr_gateway.cli import main

main(["worker", *sys.argv[1:]])
