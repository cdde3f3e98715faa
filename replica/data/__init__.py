"""replica.data"""
