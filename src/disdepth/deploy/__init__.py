"""disdepth.deploy"""
