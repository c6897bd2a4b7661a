/*
 * bench/baselines/judyl.h — JudyL (Debian libjudy-dev) behind the same
 * small interface as the other baselines. Bytes from JudyLMemUsed.
 */
#ifndef BL_JUDYL_H
#define BL_JUDYL_H

#include <stddef.h>
#include <stdint.h>

struct bl_judyl {
	void *array; /* Pvoid_t */
	uint64_t count;
};

void bl_judyl_init(struct bl_judyl *j);
void bl_judyl_destroy(struct bl_judyl *j);
int bl_judyl_insert(struct bl_judyl *j, uint64_t key, void *value);
void *bl_judyl_load(const struct bl_judyl *j, uint64_t key);
int bl_judyl_erase(struct bl_judyl *j, uint64_t key);
uint64_t bl_judyl_walk(const struct bl_judyl *j, uint64_t limit);
size_t bl_judyl_bytes(const struct bl_judyl *j);

#endif
