"""AWS for the health audits and Lightsail access.

- :mod:`agent.aws.lightsail` — instances, ``get_instance_access_details``, instance metrics.
- :mod:`agent.aws.ssh` — temporary SSH access: private files, pinned host keys, control master.
- :mod:`agent.aws.inventory` — the Lightsail dynamic inventory behind ``inventory/lightsail.py``.
- :mod:`agent.aws.cloudwatch` — CloudWatch series (memory, disk) for host reports.
"""
