"""disdepth.engine"""
