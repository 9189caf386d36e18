"""Chapter-specific drivers and checkers that ship to students (never import solutions/).

A spec names them as ``"autograder.public.SLUG:function"``: a driver takes
``(obj, case)`` and returns the student's answer; a checker takes
``(case, actual, tolerance)`` and returns ``None`` or what is wrong.
"""
