/*
 * gmtrack/gmtrack.h — includes every public gmtrack header.
 */
#ifndef GMTRACK_GMTRACK_H
#define GMTRACK_GMTRACK_H

#include <gmtrack/common.h>
#include <gmtrack/alloc.h>
#include <gmtrack/rcu.h>

#endif /* GMTRACK_GMTRACK_H */
