"""replica.eval"""
