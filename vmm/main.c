/*
 * vmm/main.c — the gmvm command line: parses and checks options, runs the
 * built-in guest on one VM (or live-migrates it to a second VM in this
 * process with --migrate), prints the guest's serial output, and checks
 * the guest's checksums against the host's. Exit status 0 only if every
 * check passed; 2 for bad usage; 1 for any other failure; 77 if /dev/kvm
 * cannot be used (with "skipped: ..." on stdout).
 */
#define _GNU_SOURCE
#include "hotplug.h"
#include "migrate.h"
#include "vm.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gmvm [options]\n"
		"Runs gmvm's built-in 64-bit guest on KVM; guest memory is tracked by gm_space.\n"
		"  --vcpus N            vCPUs, one thread each (1..64; default 1)\n"
		"  --mem SIZE           guest RAM (default 64M; K, M, G suffixes)\n"
		"  --slots N            cut RAM into N memslots (default 1)\n"
		"  --memfd              back RAM with a memfd (default: anonymous memory)\n"
		"  --sparse SIZE        add a sparse (MAP_NORESERVE) slot; the workload runs in it\n"
		"  --slot GPA:SIZE[:ro] add an extra memslot (checked like any other; up to 8)\n"
		"  --workload W         seq | random | hot (default seq); fault: the guest runs a\n"
		"                       privileged instruction (shows how an exit is reported)\n"
		"  --rounds N           rounds of writes (default 4)\n"
		"  --writes N           writes per round, random and hot (default 4096)\n"
		"  --hot SIZE           hot-set size per vCPU (default 1M)\n"
		"  --span SIZE          bytes each vCPU writes (default: its share of memory)\n"
		"  --delay N            spin iterations after each write (write rate)\n"
		"  --dma SIZE           bytes the test device fills at the end (default 4096)\n"
		"  --seed N             guest PRNG seed (default 1)\n"
		"  --dirty MODE         bitmap | ring: KVM dirty tracking (default bitmap)\n"
		"  --ring-entries N     dirty ring entries per vCPU (default 4096)\n"
		"  --no-manual-protect  KVM_GET_DIRTY_LOG without KVM_CLEAR_DIRTY_LOG\n"
		"  --migrate            live-migrate to a second VM in this process\n"
		"  --max-rounds N       pre-copy rounds at most (default 8)\n"
		"  --hotplug            a control thread adds/removes/moves/resizes slots meanwhile\n"
		"  --fail-send R:K      (test) the K-th send of pre-copy round R fails once\n"
		"  --no-testdev         leave the test device out\n"
		"  --cpl0               run the guest at CPL 0 (default CPL 3: under PVM, KVM\n"
		"                       without VMX/SVM, CPL-0 guest code is emulated, ~20x slower)\n"
		"  --timeout SEC        give up after SEC seconds (default 120)\n"
		"  --quiet, --verbose, --help\n");
}

/* Parses SIZE ("64M", "4096", "1G"): 0 or -EINVAL. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!s || !*s || *s == '-')
		return -EINVAL;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end += *end == 'i' && end[1] == 'B' ? 2 : 1;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!s || !*s || *s == '-')
		return -EINVAL;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

struct options {
	struct gmvm_config cfg;
	bool migrate, hotplug;
	struct gmvm_migrate_opts mig;
};

static int bad(const char *opt, const char *val, const char *what)
{
	fprintf(stderr, "gmvm: %s %s: %s\n", opt, val ? val : "", what);
	return 2;
}

static int parse_slot(struct gmvm_config *c, const char *arg)
{
	if (c->nextra >= GMVM_MAX_EXTRA_SLOTS)
		return -ENOSPC;
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", arg);
	char *size = strchr(buf, ':');
	if (!size)
		return -EINVAL;
	*size++ = 0;
	char *ro = strchr(size, ':');
	if (ro) {
		*ro++ = 0;
		if (strcmp(ro, "ro"))
			return -EINVAL;
	}
	uint64_t gpa, bytes;
	if (parse_size(buf, &gpa) || parse_size(size, &bytes))
		return -EINVAL;
	c->extra[c->nextra].gpa = gpa;
	c->extra[c->nextra].bytes = bytes;
	c->extra[c->nextra].readonly = ro != NULL;
	c->nextra++;
	return 0;
}

static int parse(int argc, char **argv, struct options *o)
{
	enum { O_VCPUS = 256, O_MEM, O_SLOTS, O_MEMFD, O_SPARSE, O_SLOT, O_WORKLOAD, O_ROUNDS,
	       O_WRITES, O_HOT, O_SPAN, O_DELAY, O_DMA, O_SEED, O_DIRTY, O_RING, O_NOMANUAL,
	       O_MIGRATE, O_MAXROUNDS, O_HOTPLUG, O_FAILSEND, O_NOTESTDEV, O_TIMEOUT, O_QUIET,
	       O_VERBOSE, O_HELP, O_CPL0 };
	static const struct option longopts[] = {
		{"vcpus", 1, 0, O_VCPUS}, {"mem", 1, 0, O_MEM}, {"slots", 1, 0, O_SLOTS},
		{"memfd", 0, 0, O_MEMFD}, {"sparse", 1, 0, O_SPARSE}, {"slot", 1, 0, O_SLOT},
		{"workload", 1, 0, O_WORKLOAD}, {"rounds", 1, 0, O_ROUNDS},
		{"writes", 1, 0, O_WRITES}, {"hot", 1, 0, O_HOT}, {"span", 1, 0, O_SPAN},
		{"delay", 1, 0, O_DELAY}, {"dma", 1, 0, O_DMA}, {"seed", 1, 0, O_SEED},
		{"dirty", 1, 0, O_DIRTY}, {"ring-entries", 1, 0, O_RING},
		{"no-manual-protect", 0, 0, O_NOMANUAL}, {"migrate", 0, 0, O_MIGRATE},
		{"max-rounds", 1, 0, O_MAXROUNDS}, {"hotplug", 0, 0, O_HOTPLUG},
		{"fail-send", 1, 0, O_FAILSEND}, {"no-testdev", 0, 0, O_NOTESTDEV},
		{"timeout", 1, 0, O_TIMEOUT}, {"quiet", 0, 0, O_QUIET},
		{"verbose", 0, 0, O_VERBOSE}, {"help", 0, 0, O_HELP}, {"cpl0", 0, 0, O_CPL0},
		{0, 0, 0, 0},
	};
	struct gmvm_config *c = &o->cfg;
	bool ring = false;
	uint64_t v, ring_entries = 4096;
	int opt;
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		const char *a = optarg, *name = argv[optind - 1];
		switch (opt) {
		case O_VCPUS:
			if (parse_u64(a, &v) || v < 1 || v > GMVM_MAX_VCPUS)
				return bad("--vcpus", a, "a number from 1 to 64");
			c->nvcpus = (unsigned)v;
			break;
		case O_MEM:
			if (parse_size(a, &c->ram_bytes))
				return bad("--mem", a, "not a size");
			break;
		case O_SLOTS:
			if (parse_u64(a, &v) || v < 1 || v > 512)
				return bad("--slots", a, "a number from 1 to 512");
			c->ram_slots = (unsigned)v;
			break;
		case O_MEMFD: c->memfd = true; break;
		case O_SPARSE:
			if (parse_size(a, &c->sparse_bytes))
				return bad("--sparse", a, "not a size");
			break;
		case O_SLOT:
			if (parse_slot(c, a))
				return bad("--slot", a, "want GPA:SIZE or GPA:SIZE:ro (at most 8)");
			break;
		case O_WORKLOAD:
			if (!strcmp(a, "seq")) c->workload = W_SEQ;
			else if (!strcmp(a, "random")) c->workload = W_RANDOM;
			else if (!strcmp(a, "hot")) c->workload = W_HOT;
			else if (!strcmp(a, "fault")) c->workload = W_FAULT;
			else return bad("--workload", a, "seq, random, hot or fault");
			break;
		case O_ROUNDS: if (parse_u64(a, &c->rounds)) return bad("--rounds", a, "not a number"); break;
		case O_WRITES: if (parse_u64(a, &c->writes)) return bad("--writes", a, "not a number"); break;
		case O_HOT: if (parse_size(a, &c->hot_bytes)) return bad("--hot", a, "not a size"); break;
		case O_SPAN: if (parse_size(a, &c->span)) return bad("--span", a, "not a size"); break;
		case O_DELAY: if (parse_u64(a, &c->delay)) return bad("--delay", a, "not a number"); break;
		case O_DMA: if (parse_size(a, &c->dma)) return bad("--dma", a, "not a size"); break;
		case O_SEED: if (parse_u64(a, &c->seed)) return bad("--seed", a, "not a number"); break;
		case O_DIRTY:
			if (!strcmp(a, "ring")) ring = true;
			else if (strcmp(a, "bitmap")) return bad("--dirty", a, "bitmap or ring");
			break;
		case O_RING:
			/* KVM: a ring of at least one page (256 entries), a power of two */
			if (parse_u64(a, &ring_entries) || ring_entries < 256 || ring_entries > (1u << 20))
				return bad("--ring-entries", a, "256 to 1048576");
			break;
		case O_NOMANUAL: c->no_manual_protect = true; break;
		case O_MIGRATE: o->migrate = true; break;
		case O_MAXROUNDS:
			if (parse_u64(a, &v) || v < 1 || v > 1000)
				return bad("--max-rounds", a, "1 to 1000");
			o->mig.max_rounds = (unsigned)v;
			break;
		case O_HOTPLUG: o->hotplug = true; break;
		case O_FAILSEND: {
			unsigned r, k;
			char tail;
			if (!a || sscanf(a, "%u:%u%c", &r, &k, &tail) != 2)
				return bad("--fail-send", a, "want ROUND:SEND");
			o->mig.fail_round = r;
			o->mig.fail_send = k;
			o->mig.fail_armed = true;
			break;
		}
		case O_NOTESTDEV: c->no_testdev = true; break;
		case O_TIMEOUT:
			if (parse_u64(a, &v) || v > 3600)
				return bad("--timeout", a, "0 to 3600 seconds");
			c->timeout_s = (unsigned)v;
			break;
		case O_QUIET: c->quiet = true; break;
		case O_VERBOSE: c->verbose = true; break;
		case O_CPL0: c->cpl0 = true; break;
		case O_HELP: usage(stdout); return 1;
		case ':':
			return bad(name, NULL, "needs a value");
		default:
			fprintf(stderr, "gmvm: unknown option %s (see --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "gmvm: unexpected argument %s (see --help)\n", argv[optind]);
		return 2;
	}
	if (ring)
		c->ring_entries = (uint32_t)ring_entries;
	if (o->migrate || o->hotplug)
		c->dirty_log = true;
	if (o->hotplug)
		c->pool_bytes = 64ull << 20;
	if ((o->hotplug || o->mig.fail_armed) && !o->migrate && o->mig.fail_armed)
		return bad("--fail-send", NULL, "needs --migrate");
	return 0;
}

static int run_plain(struct options *o)
{
	struct gmvm_vm *vm = calloc(1, sizeof(*vm));
	char err[600];
	if (!vm)
		return 1;
	int rc = gmvm_vm_create(vm, &o->cfg, false, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "gmvm: %s\n", err);
		free(vm);
		return 1;
	}
	struct gmvm_hotplug hp;
	bool hot = o->hotplug && gmvm_hotplug_start(&hp, vm, NULL, NULL, err, sizeof(err)) == 0;
	if (o->hotplug && !hot)
		fprintf(stderr, "gmvm: hotplug: %s\n", err);
	rc = gmvm_vm_start(vm, err, sizeof(err));
	if (!rc)
		rc = gmvm_vm_wait(vm, err, sizeof(err));
	if (hot) {
		char herr[300];
		if (gmvm_hotplug_stop(&hp, herr, sizeof(herr))) {
			fprintf(stderr, "gmvm: hotplug: %s\n", herr);
			rc = rc ? rc : -EIO;
		} else if (!o->cfg.quiet) {
			printf("gmvm: hotplug: %s\n", herr);
		}
	}
	uint64_t sum = 0;
	if (!rc)
		rc = gmvm_vm_check(vm, &sum, err, sizeof(err));
	if (rc)
		fprintf(stderr, "gmvm: %s\n", err);
	else
		printf("gmvm: checksum 0x%016" PRIx64 " ok (%u vCPUs, guest and host agree)\n", sum,
		       vm->nvcpus);
	gmvm_vm_destroy(vm);
	free(vm);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct options o;
	memset(&o, 0, sizeof(o));
	gmvm_config_default(&o.cfg);
	gmvm_migrate_opts_default(&o.mig);
	int prc = parse(argc, argv, &o);
	if (prc)
		return prc == 1 ? 0 : prc;
	char err[600];
	if (gmvm_config_check(&o.cfg, err, sizeof(err))) {
		fprintf(stderr, "gmvm: %s\n", err);
		return 2;
	}
	const char *why = gmvm_kvm_unusable();
	if (why) {
		printf("skipped: /dev/kvm not usable (%s)\n", why);
		return 77;
	}
	gm_rcu_register_thread();
	int rc = o.migrate ? gmvm_migrate_main(&o.cfg, &o.mig, o.hotplug) : run_plain(&o);
	gm_rcu_unregister_thread();
	return rc;
}
