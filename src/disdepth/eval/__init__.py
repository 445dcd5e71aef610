"""disdepth.eval"""
