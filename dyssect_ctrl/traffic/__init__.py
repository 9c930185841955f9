"""The traffic generator's control side: profiles, the BESS pipeline, sampling, runs."""
