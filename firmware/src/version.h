#ifndef BOX_VERSION_H
#define BOX_VERSION_H

#define BOX_FW_MAJOR 0
#define BOX_FW_MINOR 1
#define BOX_FW_PATCH 0

/* The first 8 hex digits of the git commit, set by the build (0: unknown). */
#ifndef BOX_BUILD
#define BOX_BUILD 0u
#endif

#endif
