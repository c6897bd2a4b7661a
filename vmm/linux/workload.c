/*
 * gmwork — the Linux guest's workload (vmm/linux): writes a working set of
 * SIZE bytes in ROUNDS rounds and prints a checksum of the set after each.
 * Parameters come from argv (gmwork SIZE_MIB ROUNDS) or, absent those, from
 * /proc/cmdline (gmwork_mib=N gmwork_rounds=R, or gmwork.mib / gmwork.rounds);
 * defaults 16 MiB, 4 rounds. gminit.c runs the same rounds as the guest's
 * /init; this one is the busybox init.sh's workload and the host's
 * reference for the expected checksums.
 * The values written depend only on (round, offset), so every run (and a
 * migrated one) prints the same checksums. Built with gcc -static.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gmwork_round.h"

static unsigned long param(const char *cmdline, const char *key, unsigned long dflt)
{
	const char *p = cmdline;
	size_t n = strlen(key);
	while ((p = strstr(p, key)) != NULL) {
		if ((p == cmdline || p[-1] == ' ') && p[n] == '=')
			return strtoul(p + n + 1, NULL, 0);
		p += n;
	}
	return dflt;
}

int main(int argc, char **argv)
{
	char cmdline[4096] = "";
	FILE *f = fopen("/proc/cmdline", "r");
	if (f) {
		if (!fgets(cmdline, sizeof cmdline, f))
			cmdline[0] = 0;
		fclose(f);
	}
	unsigned long mib = param(cmdline, "gmwork_mib", param(cmdline, "gmwork.mib", 16));
	unsigned long rounds = param(cmdline, "gmwork_rounds", param(cmdline, "gmwork.rounds", 4));
	if (argc > 1)
		mib = strtoul(argv[1], NULL, 0);
	if (argc > 2)
		rounds = strtoul(argv[2], NULL, 0);
	if (mib == 0 || mib > 65536 || rounds == 0 || rounds > 1000000) {
		fprintf(stderr, "gmwork: bad size %lu MiB or rounds %lu\n", mib, rounds);
		return 1;
	}
	size_t words = (size_t)mib << 17; /* 8-byte words */
	uint64_t *set = mmap(NULL, words * 8, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (set == MAP_FAILED) {
		perror("gmwork: mmap");
		return 1;
	}
	printf("gmwork: %lu MiB, %lu rounds\n", mib, rounds);
	fflush(stdout);
	for (unsigned long r = 1; r <= rounds; r++) {
		uint64_t sum = gmwork_round(set, words, r);
		printf("gmwork: round %lu/%lu checksum %016llx\n", r, rounds,
		       (unsigned long long)sum);
		fflush(stdout);
	}
	printf("gmwork: done\n");
	fflush(stdout);
	return 0;
}
