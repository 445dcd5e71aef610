"""disdepth.distill"""
