/* bench/baselines/judyl.c — see judyl.h. */
#include "judyl.h"

#include <Judy.h>
#include <errno.h>

void bl_judyl_init(struct bl_judyl *j)
{
	j->array = NULL;
	j->count = 0;
}

void bl_judyl_destroy(struct bl_judyl *j)
{
	JudyLFreeArray(&j->array, PJE0);
	j->count = 0;
}

int bl_judyl_insert(struct bl_judyl *j, uint64_t key, void *value)
{
	PWord_t pv = (PWord_t)JudyLIns(&j->array, (Word_t)key, PJE0);
	if (pv == PJERR)
		return -ENOMEM;
	if (*pv)
		return -EEXIST;
	*pv = (Word_t)value;
	j->count++;
	return 0;
}

void *bl_judyl_load(const struct bl_judyl *j, uint64_t key)
{
	PWord_t pv = (PWord_t)JudyLGet(j->array, (Word_t)key, PJE0);
	return pv ? (void *)*pv : NULL;
}

int bl_judyl_erase(struct bl_judyl *j, uint64_t key)
{
	int rc = JudyLDel(&j->array, (Word_t)key, PJE0);
	if (rc == 1)
		j->count--;
	return rc == 1 ? 0 : -ENOENT;
}

uint64_t bl_judyl_walk(const struct bl_judyl *j, uint64_t limit)
{
	Word_t idx = 0;
	uint64_t sum = 0, seen = 0;
	PWord_t pv = (PWord_t)JudyLFirst(j->array, &idx, PJE0);
	while (pv && seen < limit) {
		sum += idx;
		seen++;
		pv = (PWord_t)JudyLNext(j->array, &idx, PJE0);
	}
	return sum;
}

size_t bl_judyl_bytes(const struct bl_judyl *j)
{
	return sizeof(*j) + (size_t)JudyLMemUsed(j->array);
}
