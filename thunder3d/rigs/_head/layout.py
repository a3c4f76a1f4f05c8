"""Landmark positions of the built-in head (cm; +y up, +z out of the face, +x subject's left).

Proportions of an adult head: crown at y = +11, chin at y = -12, eyes half-way, nose base and
mouth in the classical thirds of the lower face. Everything else is placed relative to these.
"""

EYE_X = 3.1  # eyeball centres at (+-EYE_X, EYE_Y, EYE_Z)
EYE_Y = -0.5
EYE_Z = 6.2
EYE_RADIUS = 1.2
IRIS_ANGLE = 0.52  # half-angle (rad) of the iris cap seen from the eyeball centre
PUPIL_ANGLE = 0.22

EYE_SLIT_Y = -0.6  # height of the lid slit in the grid (before the lids are opened)
EYE_INNER_X = 1.75  # canthi
EYE_OUTER_X = 4.45
LID_UP = 0.48  # upper / lower lid edge above / below the slit, at the middle of the eye
LID_DOWN = 0.42

MOUTH_Y = -7.5  # mouth line (lips closed)
MOUTH_HALF_WIDTH = 2.45  # x of the mouth corners
NOSE_TIP_Y = -4.5

JAW_HINGE = (-1.8, -0.6)  # (y, z) of the jaw rotation axis, parallel to x, just in front of the ears
NECK_BOTTOM = -19.0

AXIS_Z = -0.5  # z of the vertical axis the skin rays start from
BROW_Y = 1.6
