import sys

from llm_api.cli import main

sys.exit(main())
