"""``python -m app``: serve the dashboard and the API with the ``EPLB_*`` settings."""

import sys

from .server import main

if __name__ == "__main__":
    try:
        main()
    except ValueError as error:  # a bad EPLB_* variable
        sys.exit(f"eplb: error: {error}")
