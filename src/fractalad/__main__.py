import sys

from fractalad.cli import main

sys.exit(main())
