"""replica.agents"""
