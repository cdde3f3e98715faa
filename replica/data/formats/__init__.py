"""replica.data.formats"""
