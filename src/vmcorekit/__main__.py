import sys

from .cli._entry import main

sys.exit(main())
