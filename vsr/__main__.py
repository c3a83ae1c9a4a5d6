"""`python -m vsr ...`, which is also how `torchrun -m vsr train ...` starts each worker."""

from vsr.cli import main

main()
