"""replica.agents.envs"""
