"""disdepth.teachers"""
