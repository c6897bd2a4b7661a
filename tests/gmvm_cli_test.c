/*
 * tests/gmvm_cli_test.c — the gmvm program end to end ($GMVM, set by
 * CMake): every guest workload to its checksum (seq, random, hot; memfd;
 * several slots and vCPUs); live migration in both dirty modes with the
 * destination byte-identical at the switchover and the same checksum as
 * an unmigrated run; migration with hotplug churn; a send that fails in
 * the middle of a round and then succeeds; bad input (unknown options,
 * sizes past the host, overlapping or misaligned slots, a missing device)
 * exits non-zero with a message and never crashes. Parse-level bad input
 * runs without /dev/kvm; the rest prints "skipped: ..." (exit 77) there.
 */
#include "harness.h"

#include "kvm.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct result {
	int status;      /* exit status, or 128 + signal */
	bool signaled;
	char out[16384]; /* stdout and stderr */
};

static const char *gmvm_path(void)
{
	const char *p = getenv("GMVM");
	return p && *p ? p : "./gmvm";
}

/* Runs gmvm with args (NULL-terminated) and collects its output. */
static void run(struct result *res, const char *const *args)
{
	const char *argv[64];
	size_t n = 0;
	argv[n++] = gmvm_path();
	for (size_t i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	int fds[2];
	CHECK_EQ(pipe(fds), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	pid_t pid;
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	CHECK_MSG(rc == 0, "cannot run %s (set GMVM)", argv[0]);
	size_t len = 0;
	ssize_t got;
	while ((got = read(fds[0], res->out + len, sizeof(res->out) - 1 - len)) > 0)
		len += (size_t)got;
	res->out[len] = 0;
	close(fds[0]);
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	res->signaled = WIFSIGNALED(st);
	res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static bool kvm_ok(void)
{
	const char *why = gmvm_kvm_unusable();
	if (why)
		gm_test_note("skipped: /dev/kvm not usable (%s)", why);
	return !why;
}

/* The checksum a successful run printed. */
static uint64_t checksum_of(const struct result *r)
{
	const char *p = strstr(r->out, "gmvm: checksum 0x");
	CHECK_MSG(p != NULL, "no checksum line in:\n%s", r->out);
	return strtoull(p + strlen("gmvm: checksum "), NULL, 16);
}

static uint64_t run_ok(const char *const *args)
{
	static struct result r;
	run(&r, args);
	CHECK_MSG(r.status == 0 && strstr(r.out, " ok ("),
		  "gmvm %s ... exited %d:\n%s", args[0] ? args[0] : "", r.status, r.out);
	CHECK(!strstr(r.out, "Sanitizer"));
	return checksum_of(&r);
}

GM_TEST(every_workload_reaches_its_checksum)
{
	if (!kvm_ok())
		return;
	const char *const cases[][16] = {
		{"--quiet", "--mem", "16M", "--workload", "seq", "--rounds", "3", NULL},
		{"--quiet", "--mem", "16M", "--workload", "random", "--writes", "20000", NULL},
		{"--quiet", "--mem", "16M", "--workload", "hot", "--hot", "64K", "--rounds", "200", NULL},
		{"--quiet", "--mem", "16M", "--memfd", "--slots", "4", "--vcpus", "2", NULL},
		{"--quiet", "--mem", "24M", "--vcpus", "3", "--workload", "random", "--delay", "10", NULL},
		{"--quiet", "--mem", "8M", "--sparse", "64G", "--workload", "hot", "--hot", "256K", NULL},
		{"--quiet", "--mem", "4M", "--cpl0", "--span", "64K", "--rounds", "1", NULL},
		{"--quiet", "--mem", "16M", "--hotplug", "--rounds", "5", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_ok(cases[i]);
}

GM_TEST(migration_is_byte_identical_in_both_dirty_modes)
{
	if (!kvm_ok())
		return;
#define WL "--quiet", "--mem", "32M", "--vcpus", "2", "--workload", "random", "--rounds", "300", \
	   "--writes", "3000"
	const char *const plain[] = {WL, NULL};
	uint64_t want = run_ok(plain);
	const char *const modes[][24] = {
		{WL, "--migrate", NULL},
		{WL, "--migrate", "--dirty", "ring", "--ring-entries", "1024", NULL},
		{WL, "--migrate", "--no-manual-protect", NULL},
	};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		static struct result r;
		run(&r, modes[i]);
		CHECK_MSG(r.status == 0, "migration %zu exited %d:\n%s", i, r.status, r.out);
		CHECK_MSG(strstr(r.out, "byte-identical to the source's"), "%s", r.out);
		CHECK_MSG(strstr(r.out, "finished on the destination"), "%s", r.out);
		CHECK_EQ(checksum_of(&r), want);
	}
}

GM_TEST(migration_with_hotplug_churn)
{
	if (!kvm_ok())
		return;
	const char *const plain[] = {"--quiet", "--mem", "32M", "--workload", "seq", "--rounds", "150",
				     NULL};
	uint64_t want = run_ok(plain);
	const char *const args[] = {"--quiet", "--mem", "32M", "--workload", "seq", "--rounds", "150",
				    "--migrate", "--hotplug", "--max-rounds", "12", NULL};
	static struct result r;
	run(&r, args);
	CHECK_MSG(r.status == 0, "exited %d:\n%s", r.status, r.out);
	CHECK_MSG(strstr(r.out, "byte-identical to the source's"), "%s", r.out);
	CHECK_MSG(strstr(r.out, "slot changes"), "%s", r.out);
	CHECK_EQ(checksum_of(&r), want);
}

GM_TEST(failed_send_then_success_loses_no_page)
{
	if (!kvm_ok())
		return;
	const char *const plain[] = {"--quiet", "--mem", "16M", "--workload", "random", "--rounds", "200",
				     "--writes", "2000", NULL};
	uint64_t want = run_ok(plain);
	/* the first send of round 0 (the boot slot), the third of round 1 */
	for (int round = 0; round < 2; round++) {
		char spec[16];
		snprintf(spec, sizeof(spec), "%d:%d", round, round ? 3 : 1);
		const char *const args[] = {"--quiet", "--mem", "16M", "--workload", "random", "--rounds",
					    "200", "--writes", "2000", "--migrate", "--fail-send", spec,
					    NULL};
		static struct result r;
		run(&r, args);
		CHECK_MSG(r.status == 0, "exited %d:\n%s", r.status, r.out);
		CHECK_MSG(strstr(r.out, "1 failed sends retried"), "%s", r.out);
		CHECK_MSG(strstr(r.out, "byte-identical to the source's"), "%s", r.out);
		CHECK_EQ(checksum_of(&r), want);
	}
}

static void expect_refused(const char *const *args, const char *needle)
{
	static struct result r;
	run(&r, args);
	CHECK_MSG(!r.signaled && r.status != 0 && r.status != 77,
		  "gmvm %s %s: exit %d (signal: %d):\n%s", args[0], args[1] ? args[1] : "", r.status,
		  r.signaled, r.out);
	CHECK_MSG(strstr(r.out, "gmvm: ") && strstr(r.out, needle),
		  "gmvm %s: no message with \"%s\":\n%s", args[0], needle, r.out);
	CHECK(!strstr(r.out, "Sanitizer"));
}

GM_TEST(bad_options_exit_nonzero_with_a_message)
{
	const struct {
		const char *a[6];
		const char *needle;
	} cases[] = {
		{{"--bogus"}, "unknown option"},
		{{"--vcpus", "0"}, "--vcpus"},
		{{"--vcpus", "65"}, "--vcpus"},
		{{"--vcpus"}, "needs a value"},
		{{"--mem", "lots"}, "not a size"},
		{{"--mem", "1T"}, "more than the host"},
		{{"--mem", "99999"}, "multiple of 4 KiB"},
		{{"--mem", "64M", "--slots", "3"}, "multiple of 4 KiB"},
		{{"--sparse", "3M"}, "multiple of 2 MiB"},
		{{"--sparse", "4T"}, "maps at most"},
		{{"--workload", "nope"}, "seq, random, hot or fault"},
		{{"--hot", "1G", "--workload", "hot"}, "at most the share"},
		{{"--dirty", "log"}, "bitmap or ring"},
		{{"--ring-entries", "300", "--dirty", "ring"}, "power of two"},
		{{"--ring-entries", "64", "--dirty", "ring"}, "256 to"},
		{{"--fail-send", "x"}, "ROUND:SEND"},
		{{"--fail-send", "1:1"}, "needs --migrate"},
		{{"--slot", "1:2:rw"}, "GPA:SIZE"},
		{{"extra"}, "unexpected argument"},
		{{"--seed", "-1"}, "not a number"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_refused(cases[i].a, cases[i].needle);
}

GM_TEST(bad_guest_layout_and_missing_device)
{
	if (!kvm_ok())
		return;
	const struct {
		const char *a[8];
		const char *needle;
	} cases[] = {
		{{"--mem", "16M", "--slot", "0x500000:0x1000"}, "overlap"},        /* into RAM */
		{{"--mem", "16M", "--slot", "0x2000:4096"}, "overlap"},            /* into the boot slot */
		{{"--mem", "16M", "--slot", "0x80000800:0x1000"}, "not page aligned"},
		{{"--mem", "16M", "--slot", "0x80000000:0x1001"}, "not page aligned"},
		{{"--mem", "16M", "--slot", "0xfffffffff0000000:0x1000"}, "past KVM's last gfn"},
		{{"--mem", "16M", "--slot", "0x80000000:0x1000", "--slot", "0x80000000:0x1000"}, "overlap"},
		{{"--mem", "16M", "--no-testdev", "--timeout", "20"}, "exit port with status 3"},
		/* an exit gmvm cannot handle: reason, RIP and the instruction's bytes */
		{{"--mem", "16M", "--workload", "fault", "--timeout", "20"}, "instruction bytes: f4"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_refused(cases[i].a, cases[i].needle);
	/* an extra slot that is fine, and a read-only one, do not disturb the guest */
	const char *const good[] = {"--quiet", "--mem", "16M", "--slot", "0x80000000:1M", "--slot",
				    "0x90000000:64K:ro", NULL};
	run_ok(good);
}

int main(int argc, char **argv)
{
	int rc = gm_test_main(argc, argv);
	if (rc == 0 && gmvm_kvm_unusable()) {
		printf("skipped: /dev/kvm not usable (%s): only the option checks ran\n",
		       gmvm_kvm_unusable());
		return 77;
	}
	return rc;
}
