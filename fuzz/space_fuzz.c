/*
 * fuzz/space_fuzz.c — gm_space against a tiny model, driven by the input:
 * each 6-byte record is one op (add / delete / move / resize batch of one,
 * attribute set, protect / unprotect, lookups), with optional allocation
 * failures. abort() on any mismatch.
 */
#include <gmtrack/rcu.h>
#include <gmtrack/space.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define U 256
#define NIDS 8

struct ms { bool on; uint64_t base, np, hva; };
static struct ms m[NIDS];
static uint64_t attr[U], wp[U];

static bool overlap(int skip, uint64_t b, uint64_t n)
{
	for (int i = 0; i < NIDS; i++)
		if (i != skip && m[i].on && b <= m[i].base + m[i].np - 1 && m[i].base <= b + n - 1)
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static bool reg;
	if (!reg) { gm_rcu_register_thread(); reg = true; }
	struct gm_alloc_failing f;
	gm_alloc_failing_init(&f, NULL);
	struct gm_space *sp;
	struct gm_space_config cfg = {.max_slots = 6};
	if (gm_space_create(&sp, &cfg, 0, &f.allocator))
		abort();
	memset(m, 0, sizeof(m)); memset(attr, 0, sizeof(attr)); memset(wp, 0, sizeof(wp));
	uint64_t nslots = 0;
	for (size_t i = 0; i + 6 <= n; i += 6) {
		const uint8_t *r = d + i;
		int op = r[0] % 9, id = r[1] % NIDS;
		uint64_t a = r[2], b = a + r[3] % 32, np = 1 + r[3] % 40;
		if (b >= U) b = U - 1;
		if (r[5] & 0x80)
			gm_alloc_failing_arm_nth(&f, 1 + (r[5] & 7), false);
		int rc = 0, want = 0;
		switch (op) {
		case 0:
			rc = gm_space_slot_add(sp, (uint32_t)id, a, np, (uint64_t)r[4] << 12, 0);
			want = m[id].on ? -EEXIST : nslots >= 6 ? -ENOSPC : overlap(NIDS, a, np) ? -EEXIST : 0;
			if (!rc) { m[id] = (struct ms){true, a, np, (uint64_t)r[4] << 12}; nslots++; }
			break;
		case 1:
			rc = gm_space_slot_remove(sp, (uint32_t)id);
			want = m[id].on ? 0 : -ENOENT;
			if (!rc) { m[id].on = false; nslots--; }
			break;
		case 2:
			rc = gm_space_slot_move(sp, (uint32_t)id, a);
			want = !m[id].on ? -ENOENT : overlap(id, a, m[id].np) ? -EEXIST : 0;
			if (!rc) m[id].base = a;
			break;
		case 3:
			rc = gm_space_slot_resize(sp, (uint32_t)id, np);
			want = !m[id].on ? -ENOENT : overlap(id, m[id].base, np) ? -EEXIST : 0;
			if (!rc) m[id].np = np;
			break;
		case 4:
			rc = gm_space_attr_set(sp, a, b, r[4] % 3);
			if (!rc) for (uint64_t g = a; g <= b; g++) attr[g] = r[4] % 3;
			want = rc == -ENOMEM ? -ENOMEM : 0;
			break;
		case 5: case 6: {
			bool inc = op == 5;
			rc = inc ? gm_space_protect(sp, a, b) : gm_space_unprotect(sp, a, b);
			want = 0;
			for (uint64_t g = a; g <= b; g++) if (!inc && !wp[g]) want = -EINVAL;
			if (!rc) for (uint64_t g = a; g <= b; g++) wp[g] += inc ? 1 : (uint64_t)-1;
			break;
		}
		default:
			break;
		}
		gm_alloc_failing_disarm(&f);
		if (rc != want && rc != -ENOMEM)
			abort();
		const char *why;
		if (gm_space_validate(sp, &why))
			abort();
		gm_rcu_read_lock();
		for (uint64_t g = 0; g < U; g += 1 + r[4] % 7) {
			uint64_t hva;
			int w = -1;
			for (int k = 0; k < NIDS; k++)
				if (m[k].on && g - m[k].base < m[k].np) w = k;
			int got = gm_space_gfn_to_hva(sp, NULL, g, &hva);
			if (w < 0 ? got != -ENOENT : (got || hva != m[w].hva + ((g - m[w].base) << 12)))
				abort();
			if (gm_space_attr_get(sp, g) != attr[g] || gm_space_protect_count(sp, g) != wp[g])
				abort();
		}
		gm_rcu_read_unlock();
		if (gm_space_slot_count(sp) != nslots)
			abort();
	}
	gm_space_destroy(sp);
	return 0;
}
