import sys

from jaxneg.analysis.cli import main

sys.exit(main())
