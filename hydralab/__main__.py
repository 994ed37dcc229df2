import sys

from hydralab.cli import main

sys.exit(main())
