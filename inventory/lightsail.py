#!/usr/bin/env python3
"""Lightsail dynamic inventory: ``ansible-playbook -i inventory/lightsail.py ...``.

Run it with the project's virtualenv first on PATH (it needs boto3 and the ``agent`` package).
Configuration is by environment (see ``agent/aws/inventory.py``): JADA_LIGHTSAIL_REGIONS,
JADA_LIGHTSAIL_TAGS, JADA_LIGHTSAIL_STATES; ``jada-agent lightsail run -- ansible-playbook ...``
adds temporary SSH access for every instance and removes it afterwards.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    from agent.aws.inventory import main
except ImportError as exc:  # the system python without the virtualenv
    sys.exit(f"lightsail inventory: {exc}; put the jada-agent virtualenv's bin first on PATH")

sys.exit(main())
