"""disdepth.data"""
