"""Real fabrics: topology files operators already have (ibnetdiscover, cabling plans, LLDP) as one
graph model, and the checks that run on it (tiers, blast radius, plan against discovery)."""
