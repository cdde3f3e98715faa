"""replica.train"""
