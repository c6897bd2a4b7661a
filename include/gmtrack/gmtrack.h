/*
 * gmtrack/gmtrack.h — includes every public gmtrack header.
 */
#ifndef GMTRACK_GMTRACK_H
#define GMTRACK_GMTRACK_H

#include <gmtrack/common.h>
#include <gmtrack/alloc.h>
#include <gmtrack/rcu.h>
#include <gmtrack/itree.h>
#include <gmtrack/pagemap.h>
#include <gmtrack/rangemap.h>
#include <gmtrack/rangeset.h>
#include <gmtrack/rmap.h>
#include <gmtrack/space.h>

#endif /* GMTRACK_GMTRACK_H */
