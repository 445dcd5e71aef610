"""disdepth.models"""
