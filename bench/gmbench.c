/*
 * bench/gmbench.c — the workbench driver: scenario registry, options,
 * timing, result rows, targets, and the report (tables, CSV, SVG plots).
 * Each scenario runs in a child process of its own (run_scenario).
 *
 *   gmbench [--list] [--scenario NAME]... [--size N] [--seed S]
 *           [--repeat R] [--quick] [--csv FILE] [--out DIR]
 */
#include "gmbench.h"
#include "rng.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile uint64_t gmb_sink_var;

/* ---- registry ------------------------------------------------------------ */
#define GMB_MAX_SCENARIOS 64
static const struct gmb_scenario *scenarios[GMB_MAX_SCENARIOS];
static int nscenarios;

void gmb_register(const struct gmb_scenario *s)
{
	if (nscenarios < GMB_MAX_SCENARIOS)
		scenarios[nscenarios++] = s;
}

static int scenario_cmp(const void *a, const void *b)
{
	const struct gmb_scenario *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* ---- results ------------------------------------------------------------- */
struct row {
	char *scenario, *structure, *op, *dist;
	uint64_t n;
	double ns, bytes;
	double lo, hi; /* fastest and slowest timed run; NAN: not measured here */
};

struct target {
	char *scenario, *what, *measured;
	int verdict; /* 1 meets, 0 falls short, -1 not measured */
};

struct note {
	char *scenario, *text;
	bool answer; /* gmb_answer: the summary's sentence */
};

static struct row *rows;
static size_t nrows, cap_rows;
static struct target *targets;
static size_t ntargets, cap_targets;
static struct note *notes;
static size_t nnotes, cap_notes;

#define GROW(arr, n, cap)                                                     \
	do {                                                                  \
		if ((n) == (cap)) {                                           \
			(cap) = (cap) ? 2 * (cap) : 64;                       \
			void *p_ = realloc((arr), (cap) * sizeof(*(arr)));    \
			if (!p_) {                                            \
				perror("gmbench");                            \
				exit(1);                                      \
			}                                                     \
			(arr) = p_;                                           \
		}                                                             \
	} while (0)

static char *dupstr(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d) {
		perror("gmbench");
		exit(1);
	}
	return d;
}

/* ---- context ------------------------------------------------------------- */
struct gmb_ctx {
	const struct gmb_scenario *scenario;
	char *reference;
	size_t first_row; /* this scenario's rows start here */
	uint64_t start_ns, last_progress_ns;
	bool progress_shown;
};

static struct {
	uint64_t size;
	bool size_given;
	uint64_t seed;
	int repeat;
	bool quick;
	const char *csv;
	const char *out;
} opt = {.seed = 42, .repeat = 5, .out = "out"};

uint64_t gmb_max_size(struct gmb_ctx *ctx, uint64_t dflt)
{
	(void)ctx;
	return opt.size_given ? opt.size : dflt;
}
bool gmb_size_given(struct gmb_ctx *ctx) { (void)ctx; return opt.size_given; }
uint64_t gmb_seed(struct gmb_ctx *ctx) { (void)ctx; return opt.seed; }
bool gmb_quick(struct gmb_ctx *ctx) { (void)ctx; return opt.quick; }
int gmb_repeat(struct gmb_ctx *ctx) { (void)ctx; return opt.repeat; }

uint64_t gmb_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Progress inside a scenario redraws one terminal line; into a log (stderr
 * not a terminal) only main's plain line per scenario is written. */
static bool progress_on_tty(void)
{
	static int tty = -1;
	if (tty < 0)
		tty = isatty(STDERR_FILENO);
	return tty;
}

void gmb_progress(struct gmb_ctx *ctx, const char *fmt, ...)
{
	if (!progress_on_tty())
		return;
	uint64_t now = gmb_now_ns();
	if (now - ctx->start_ns < 1000000000ULL)
		return;
	if (ctx->progress_shown && now - ctx->last_progress_ns < 200000000ULL)
		return; /* at most five updates a second */
	ctx->last_progress_ns = now;
	ctx->progress_shown = true;
	char buf[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "\r\033[K[%s %5.1fs] %s", ctx->scenario->name,
		(now - ctx->start_ns) / 1e9, buf);
	fflush(stderr);
}

static void add_note(struct gmb_ctx *ctx, bool answer, const char *fmt, va_list ap)
{
	char buf[1024];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	GROW(notes, nnotes, cap_notes);
	notes[nnotes].scenario = dupstr(ctx->scenario->name);
	notes[nnotes].text = dupstr(buf);
	notes[nnotes].answer = answer;
	nnotes++;
}

void gmb_note(struct gmb_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add_note(ctx, false, fmt, ap);
	va_end(ap);
}

void gmb_answer(struct gmb_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add_note(ctx, true, fmt, ap);
	va_end(ap);
}

void gmb_reference(struct gmb_ctx *ctx, const char *structure)
{
	free(ctx->reference);
	ctx->reference = dupstr(structure);
}

/* The spread of the latest measurements: gmb_row finds its row's by the
 * median it was given (the value a measure call returned). */
#define SPREADS 64
static struct spread {
	double median, lo, hi;
} spreads[SPREADS];
static unsigned nspreads;

static void spread_keep(double median, const double *v, int n)
{
	double lo = v[0], hi = v[0];
	for (int i = 1; i < n; i++) {
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	spreads[nspreads++ % SPREADS] = (struct spread){median, lo, hi};
}

static const struct spread *spread_of(double median)
{
	unsigned n = nspreads < SPREADS ? nspreads : SPREADS;
	for (unsigned k = 0; k < n; k++) {
		const struct spread *sp = &spreads[(nspreads - 1 - k) % SPREADS];
		if (sp->median == median)
			return sp;
	}
	return NULL;
}

void gmb_row(struct gmb_ctx *ctx, const char *structure, const char *op,
	     uint64_t n, const char *dist, double ns, double bytes)
{
	const struct spread *sp = spread_of(ns);
	GROW(rows, nrows, cap_rows);
	rows[nrows] = (struct row){
		.scenario = dupstr(ctx->scenario->name),
		.structure = dupstr(structure),
		.op = dupstr(op),
		.dist = dupstr(dist),
		.n = n,
		.ns = ns,
		.bytes = bytes,
		.lo = sp ? sp->lo : NAN,
		.hi = sp ? sp->hi : NAN,
	};
	nrows++;
	gmb_progress(ctx, "%s %s n=%" PRIu64 " %s: %.2f ns", structure, op, n,
		     dist, ns);
}

/* ---- timing -------------------------------------------------------------- */
static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double run_once(const struct gmb_case *c)
{
	if (c->setup)
		c->setup(c->arg);
	uint64_t t0 = gmb_now_ns();
	uint64_t ops = c->body(c->arg);
	uint64_t t1 = gmb_now_ns();
	if (c->teardown)
		c->teardown(c->arg);
	return ops ? (double)(t1 - t0) / (double)ops : 0.0;
}

/* The measuring core: one untimed run of each case (if warmup), then
 * `repeat` rounds in which every case runs once, the first case rotating
 * from round to round; ns[i] = median of case i's runs. */
static void measure_rounds(const struct gmb_case *cases, int n, int repeat,
			   bool warmup, double *ns)
{
	if (repeat < 1)
		repeat = 1;
	double *v = malloc(sizeof(double) * (size_t)repeat * (size_t)(n > 0 ? n : 1));
	if (!v) {
		perror("gmbench");
		exit(1);
	}
	for (int i = 0; i < n && warmup; i++)
		run_once(&cases[i]);
	for (int r = 0; r < repeat; r++)
		for (int k = 0; k < n; k++) {
			int i = (r + k) % n;
			v[(size_t)i * (size_t)repeat + (size_t)r] = run_once(&cases[i]);
		}
	for (int i = 0; i < n; i++) {
		double *mine = v + (size_t)i * (size_t)repeat;
		ns[i] = gmb_median(mine, repeat);
		spread_keep(ns[i], mine, repeat);
	}
	free(v);
}

double gmb_measure_n(struct gmb_ctx *ctx, const struct gmb_case *c,
		     int repeat, bool warmup)
{
	(void)ctx;
	double ns;
	measure_rounds(c, 1, repeat, warmup, &ns);
	return ns;
}

void gmb_measure_group(struct gmb_ctx *ctx, const struct gmb_case *cases, int n,
		       double *ns)
{
	(void)ctx;
	measure_rounds(cases, n, opt.repeat, true, ns);
}

double gmb_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), dbl_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double gmb_measure(struct gmb_ctx *ctx, const struct gmb_case *c)
{
	return gmb_measure_n(ctx, c, opt.repeat, true);
}

/* ---- PRNG ---------------------------------------------------------------- */
void gmb_rng_init(struct gmb_rng *r, uint64_t seed) { gm_xoshiro_seed(r->s, seed); }
uint64_t gmb_rng_next(struct gmb_rng *r) { return gm_xoshiro_next(r->s); }
uint64_t gmb_rng_below(struct gmb_rng *r, uint64_t n) { return gm_xoshiro_below(r->s, n); }

/* ---- targets ------------------------------------------------------------- */
static const struct row *find_row(const char *scenario, struct gmb_sel s)
{
	/* The last matching row wins, so a re-measured row replaces one. */
	for (size_t i = nrows; i-- > 0;) {
		const struct row *r = &rows[i];
		if (!strcmp(r->scenario, scenario) &&
		    !strcmp(r->structure, s.structure) && !strcmp(r->op, s.op) &&
		    r->n == s.n && !strcmp(r->dist, s.dist))
			return r;
	}
	return NULL;
}

uint64_t gmb_largest_n(struct gmb_ctx *ctx, const char *structure, const char *op,
		       const char *dist)
{
	uint64_t n = 0;
	for (size_t i = ctx->first_row; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (!strcmp(r->structure, structure) && !strcmp(r->op, op) &&
		    !strcmp(r->dist, dist) && r->n > n)
			n = r->n;
	}
	return n;
}

bool gmb_value(struct gmb_ctx *ctx, struct gmb_sel sel, double *ns, double *bytes)
{
	const struct row *r = find_row(ctx->scenario->name, sel);
	if (r && ns)
		*ns = r->ns;
	if (r && bytes)
		*bytes = r->bytes;
	return r != NULL;
}

static void add_target(struct gmb_ctx *ctx, const char *what,
		       const char *measured, int verdict)
{
	GROW(targets, ntargets, cap_targets);
	targets[ntargets] = (struct target){
		.scenario = dupstr(ctx->scenario->name),
		.what = dupstr(what),
		.measured = dupstr(measured),
		.verdict = verdict,
	};
	ntargets++;
}

static bool compare(double v, enum gmb_cmp cmp, double bound)
{
	return cmp == GMB_AT_MOST ? v <= bound : v >= bound;
}

static void target_ratio_field(struct gmb_ctx *ctx, const char *what,
			       struct gmb_sel a, struct gmb_sel b,
			       enum gmb_cmp cmp, double bound,
			       enum gmb_field field)
{
	const struct row *ra = find_row(ctx->scenario->name, a);
	const struct row *rb = find_row(ctx->scenario->name, b);
	if (!ra || !rb) {
		add_target(ctx, what, "row not measured", -1);
		return;
	}
	double va = field == GMB_NS ? ra->ns : ra->bytes;
	double vb = field == GMB_NS ? rb->ns : rb->bytes;
	double ratio = vb > 0 ? va / vb : INFINITY;
	char buf[160];
	snprintf(buf, sizeof(buf), "%.4gx (%.4g / %.4g %s)", ratio, va, vb,
		 field == GMB_NS ? "ns" : "B");
	add_target(ctx, what, buf, compare(ratio, cmp, bound));
}

void gmb_target_ratio(struct gmb_ctx *ctx, const char *what, struct gmb_sel a,
		      struct gmb_sel b, enum gmb_cmp cmp, double bound)
{
	target_ratio_field(ctx, what, a, b, cmp, bound, GMB_NS);
}

void gmb_target_bytes_ratio(struct gmb_ctx *ctx, const char *what,
			    struct gmb_sel a, struct gmb_sel b,
			    enum gmb_cmp cmp, double bound)
{
	target_ratio_field(ctx, what, a, b, cmp, bound, GMB_BYTES);
}

void gmb_target_bound(struct gmb_ctx *ctx, const char *what, struct gmb_sel a,
		      enum gmb_field field, enum gmb_cmp cmp, double bound)
{
	const struct row *ra = find_row(ctx->scenario->name, a);
	if (!ra) {
		add_target(ctx, what, "row not measured", -1);
		return;
	}
	double v = field == GMB_NS ? ra->ns : ra->bytes;
	char buf[96];
	snprintf(buf, sizeof(buf), "%.4g %s", v, field == GMB_NS ? "ns" : "B");
	add_target(ctx, what, buf, compare(v, cmp, bound));
}

void gmb_target_verdict(struct gmb_ctx *ctx, const char *what,
			const char *measured, bool meets)
{
	add_target(ctx, what, measured, meets);
}

/* ---- ratios and output --------------------------------------------------- */
static const struct row *reference_row(const char *reference, const struct row *r)
{
	if (!reference)
		return NULL;
	const struct row *fallback = NULL;
	for (size_t i = 0; i < nrows; i++) {
		const struct row *q = &rows[i];
		if (strcmp(q->scenario, r->scenario) ||
		    strcmp(q->structure, reference) || q->n != r->n ||
		    strcmp(q->dist, r->dist))
			continue;
		if (!strcmp(q->op, r->op))
			return q;
		if (!fallback)
			fallback = q;
	}
	return fallback;
}

static void format_ratio(char *buf, size_t len, const char *reference,
			 const struct row *r)
{
	const struct row *ref = reference_row(reference, r);
	if (ref && ref->ns > 0)
		snprintf(buf, len, "%.3f", r->ns / ref->ns);
	else
		snprintf(buf, len, "-");
}

static void format_bytes(char *buf, size_t len, double b)
{
	if (b < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.2f", b);
}

static const char *verdict_text(int v)
{
	return v > 0 ? "meets" : v == 0 ? "falls short" : "not measured";
}

static const char *n_counts(const char *scenario);

static void print_table(FILE *f, struct gmb_ctx *ctx, bool markdown)
{
	const char *ref = ctx->reference;
	if (markdown) {
		fprintf(f, "| structure | op | n (%s) | dist | ns/op | spread (fastest-slowest run) | bytes/entry | ratio to %s |\n",
			n_counts(ctx->scenario->name), ref ? ref : "-");
		fprintf(f, "|---|---|---:|---|---:|---:|---:|---:|\n");
	} else {
		fprintf(f, "%-26s %-14s %10s %-10s %12s %12s %9s\n", "structure",
			"op", "n", "dist", "ns/op", "bytes/entry", "ratio");
	}
	for (size_t i = ctx->first_row; i < nrows; i++) {
		const struct row *r = &rows[i];
		char ratio[32], bytes[32];
		format_ratio(ratio, sizeof(ratio), ref, r);
		format_bytes(bytes, sizeof(bytes), r->bytes);
		char spread[64] = "-";
		if (!isnan(r->lo))
			snprintf(spread, sizeof(spread), "%.4g-%.4g", r->lo, r->hi);
		if (markdown)
			fprintf(f, "| %s | %s | %" PRIu64 " | %s | %.2f | %s | %s | %s |\n",
				r->structure, r->op, r->n, r->dist, r->ns, spread, bytes, ratio);
		else
			fprintf(f, "%-26s %-14s %10" PRIu64 " %-10s %12.2f %12s %9s\n",
				r->structure, r->op, r->n, r->dist, r->ns, bytes, ratio);
	}
}

static void print_targets(FILE *f, const char *scenario, bool markdown)
{
	bool any = false;
	for (size_t i = 0; i < ntargets; i++) {
		const struct target *t = &targets[i];
		if (strcmp(t->scenario, scenario))
			continue;
		if (!any && markdown)
			fprintf(f, "\n| target | measured | verdict |\n|---|---|---|\n");
		if (!any && !markdown)
			fprintf(f, "targets:\n");
		any = true;
		if (markdown)
			fprintf(f, "| %s | %s | **%s** |\n", t->what, t->measured,
				verdict_text(t->verdict));
		else
			fprintf(f, "  [%s] %s: %s\n", verdict_text(t->verdict),
				t->what, t->measured);
	}
}

static void csv_field(FILE *f, const char *s)
{
	/* Names never hold commas or quotes; keep the file plain. */
	fputs(s, f);
}

/* ---- one scenario, in a child process ------------------------------------
 * Each scenario runs in a fork of gmbench that starts with the parent's
 * small heap and hands its results back through a temporary file, so no
 * scenario is measured in a heap (or a page cache of freed memory) that an
 * earlier one left behind: after shadow_pages had held ~1 GB of maps at
 * once, vm_lifecycle's dirty-log harvest read 1.1-1.6% of the flat scan,
 * against 0.4-0.9% when it ran alone. The format is the machine's own
 * (the same binary reads it back). */
static void put_bytes(FILE *f, const void *p, size_t n)
{
	if (fwrite(p, 1, n, f) != n) {
		perror("gmbench");
		_exit(1);
	}
}

static void put_str(FILE *f, const char *s)
{
	size_t n = s ? strlen(s) + 1 : 0; /* 0: NULL */
	put_bytes(f, &n, sizeof(n));
	put_bytes(f, s, n);
}

static bool get_bytes(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

/* A string put_str wrote; NULL only where `optional`. */
static bool get_str(FILE *f, char **out, bool optional)
{
	size_t n;
	*out = NULL;
	if (!get_bytes(f, &n, sizeof(n)) || n > (1u << 20))
		return false;
	if (!n)
		return optional;
	char *s = malloc(n);
	if (!s || !get_bytes(f, s, n) || s[n - 1]) {
		free(s);
		return false;
	}
	*out = s;
	return true;
}

/* The child's side: what the scenario added, from the given counts on. */
static void put_results(FILE *f, const struct gmb_ctx *ctx, size_t r0, size_t t0,
			size_t n0)
{
	put_str(f, ctx->reference);
	put_bytes(f, &ctx->progress_shown, sizeof(ctx->progress_shown));
	size_t k = nrows - r0;
	put_bytes(f, &k, sizeof(k));
	for (size_t i = r0; i < nrows; i++) {
		const struct row *r = &rows[i];
		put_str(f, r->scenario);
		put_str(f, r->structure);
		put_str(f, r->op);
		put_str(f, r->dist);
		put_bytes(f, &r->n, sizeof(r->n));
		put_bytes(f, &r->ns, sizeof(r->ns));
		put_bytes(f, &r->bytes, sizeof(r->bytes));
		put_bytes(f, &r->lo, sizeof(r->lo));
		put_bytes(f, &r->hi, sizeof(r->hi));
	}
	k = ntargets - t0;
	put_bytes(f, &k, sizeof(k));
	for (size_t i = t0; i < ntargets; i++) {
		put_str(f, targets[i].scenario);
		put_str(f, targets[i].what);
		put_str(f, targets[i].measured);
		put_bytes(f, &targets[i].verdict, sizeof(targets[i].verdict));
	}
	k = nnotes - n0;
	put_bytes(f, &k, sizeof(k));
	for (size_t i = n0; i < nnotes; i++) {
		put_str(f, notes[i].scenario);
		put_str(f, notes[i].text);
		put_bytes(f, &notes[i].answer, sizeof(notes[i].answer));
	}
	if (fflush(f)) {
		perror("gmbench");
		_exit(1);
	}
}

/* The parent's side: appends what the child wrote. False if it is cut. */
static bool get_results(FILE *f, struct gmb_ctx *ctx)
{
	size_t k;
	if (!get_str(f, &ctx->reference, true) ||
	    !get_bytes(f, &ctx->progress_shown, sizeof(ctx->progress_shown)) ||
	    !get_bytes(f, &k, sizeof(k)))
		return false;
	for (size_t i = 0; i < k; i++) {
		struct row r = {0};
		if (!get_str(f, &r.scenario, false) || !get_str(f, &r.structure, false) ||
		    !get_str(f, &r.op, false) || !get_str(f, &r.dist, false) ||
		    !get_bytes(f, &r.n, sizeof(r.n)) ||
		    !get_bytes(f, &r.ns, sizeof(r.ns)) ||
		    !get_bytes(f, &r.bytes, sizeof(r.bytes)) ||
		    !get_bytes(f, &r.lo, sizeof(r.lo)) || !get_bytes(f, &r.hi, sizeof(r.hi)))
			return false;
		GROW(rows, nrows, cap_rows);
		rows[nrows++] = r;
	}
	if (!get_bytes(f, &k, sizeof(k)))
		return false;
	for (size_t i = 0; i < k; i++) {
		struct target t = {0};
		if (!get_str(f, &t.scenario, false) || !get_str(f, &t.what, false) ||
		    !get_str(f, &t.measured, false) ||
		    !get_bytes(f, &t.verdict, sizeof(t.verdict)))
			return false;
		GROW(targets, ntargets, cap_targets);
		targets[ntargets++] = t;
	}
	if (!get_bytes(f, &k, sizeof(k)))
		return false;
	for (size_t i = 0; i < k; i++) {
		struct note nt = {0};
		if (!get_str(f, &nt.scenario, false) || !get_str(f, &nt.text, false) ||
		    !get_bytes(f, &nt.answer, sizeof(nt.answer)))
			return false;
		GROW(notes, nnotes, cap_notes);
		notes[nnotes++] = nt;
	}
	return true;
}

/* Runs s in a child and takes its results into this process's tables.
 * Returns false (with a message) if the child failed or its results are
 * cut short. */
static bool run_scenario(const struct gmb_scenario *s, struct gmb_ctx *ctx)
{
	FILE *f = tmpfile();
	if (!f) {
		perror("gmbench: tmpfile");
		return false;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		perror("gmbench: fork");
		fclose(f);
		return false;
	}
	if (pid == 0) {
		size_t r0 = nrows, t0 = ntargets, n0 = nnotes;
		s->run(ctx);
		put_results(f, ctx, r0, t0, n0);
		_exit(0);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			perror("gmbench: waitpid");
			fclose(f);
			return false;
		}
	bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (!ok)
		fprintf(stderr, "gmbench: scenario %s failed (%s %d)\n", s->name,
			WIFEXITED(status) ? "exit status" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	rewind(f);
	if (ok && !get_results(f, ctx)) {
		fprintf(stderr, "gmbench: scenario %s: results cut short\n", s->name);
		ok = false;
	}
	fclose(f);
	return ok;
}

/* path opened for writing, or NULL after saying why. */
static FILE *open_out(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		fprintf(stderr, "gmbench: %s: %s\n", path, strerror(errno));
	return f;
}

static int write_csv(const char *path)
{
	FILE *f = open_out(path);
	if (!f)
		return -1;
	fprintf(f, "scenario,structure,op,n,dist,ns_per_op,bytes_per_entry\n");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		csv_field(f, r->scenario);
		fputc(',', f);
		csv_field(f, r->structure);
		fputc(',', f);
		csv_field(f, r->op);
		fprintf(f, ",%" PRIu64 ",", r->n);
		csv_field(f, r->dist);
		fprintf(f, ",%.4f,", r->ns);
		if (r->bytes >= 0)
			fprintf(f, "%.4f", r->bytes);
		fputc('\n', f);
	}
	fclose(f);
	return 0;
}

/* The targets as a table of their own: scenario,verdict,target,measured
 * (the last two may hold commas: they are quoted). scripts/readme-figures
 * builds the README's figures from it. */
static void csv_quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static int write_targets_csv(const char *path)
{
	FILE *f = open_out(path);
	if (!f)
		return -1;
	fprintf(f, "scenario,verdict,target,measured\n");
	for (size_t i = 0; i < ntargets; i++) {
		const struct target *t = &targets[i];
		fprintf(f, "%s,%s,", t->scenario, verdict_text(t->verdict));
		csv_quoted(f, t->what);
		fputc(',', f);
		csv_quoted(f, t->measured);
		fputc('\n', f);
	}
	fclose(f);
	return 0;
}

/* One plot per (scenario, op, dist) that has at least two sizes: ns/op
 * against n, one line per structure, both axes logarithmic. */
static bool seen_before(size_t i, const char *scenario, const char *op,
			const char *dist, const char *structure)
{
	for (size_t j = 0; j < i; j++)
		if (!strcmp(rows[j].scenario, scenario) && !strcmp(rows[j].op, op) &&
		    !strcmp(rows[j].dist, dist) &&
		    (!structure || !strcmp(rows[j].structure, structure)))
			return true;
	return false;
}

static int count_sizes(const char *scenario, const char *op, const char *dist)
{
	uint64_t seen[64];
	int k = 0;
	for (size_t i = 0; i < nrows && k < 64; i++) {
		const struct row *r = &rows[i];
		if (strcmp(r->scenario, scenario) || strcmp(r->op, op) ||
		    strcmp(r->dist, dist))
			continue;
		bool dup = false;
		for (int j = 0; j < k; j++)
			dup |= seen[j] == r->n;
		if (!dup)
			seen[k++] = r->n;
	}
	return k;
}

/* A gnuplot script for the plot named pl->base (made a file name) in dir,
 * its preamble written up to "plot "; false if it cannot be written. */
struct plot {
	FILE *gp;
	char base[512], path[600];
};

static bool plot_open(struct plot *pl, const char *dir, const char *scenario,
		      const char *title, const char *ylabel)
{
	for (char *p = pl->base; *p; p++)
		if (*p == '/' || *p == ' ')
			*p = '-';
	snprintf(pl->path, sizeof(pl->path), "%s/%s.gp", dir, pl->base);
	pl->gp = fopen(pl->path, "w");
	if (!pl->gp)
		return false;
	fprintf(pl->gp, "set terminal svg size 800,500 dynamic background '#ffffff'\n"
			"set output '%s/%s.svg'\n"
			"set title '%s: %s' noenhanced\n"
			"set logscale xy\nset xlabel '%s' noenhanced\nset ylabel '%s'\n"
			"set key outside right noenhanced\nset grid\nplot ",
		dir, pl->base, scenario, title, n_counts(scenario), ylabel);
	return true;
}

/* Runs gnuplot on the script when it has lines to draw; on success the
 * script goes and the report links the SVG. 0, or -1. */
static int plot_finish(struct plot *pl, bool drawn, FILE *report)
{
	fclose(pl->gp);
	char cmd[1400];
	snprintf(cmd, sizeof(cmd), "gnuplot '%s' 2>/dev/null", pl->path);
	if (!drawn || system(cmd) != 0) {
		remove(pl->path);
		return -1;
	}
	remove(pl->path);
	fprintf(report, "![%s](%s.svg)\n\n", pl->base, pl->base);
	return 0;
}

static int write_plot(const char *dir, const char *scenario, const char *op,
		      const char *dist, FILE *report)
{
	struct plot pl;
	char title[300];
	snprintf(pl.base, sizeof(pl.base), "%s_%s_%s", scenario, op, dist);
	snprintf(title, sizeof(title), "%s (%s)", op, dist);
	if (!plot_open(&pl, dir, scenario, title, "ns per op"))
		return -1;
	FILE *gp = pl.gp;
	bool first = true;
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (strcmp(r->scenario, scenario) || strcmp(r->op, op) ||
		    strcmp(r->dist, dist) || seen_before(i, scenario, op, dist, r->structure))
			continue;
		fprintf(gp, "%s'-' using 1:2 with linespoints title '%s'",
			first ? "" : ", ", r->structure);
		first = false;
	}
	fprintf(gp, "\n");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (strcmp(r->scenario, scenario) || strcmp(r->op, op) ||
		    strcmp(r->dist, dist) || seen_before(i, scenario, op, dist, r->structure))
			continue;
		for (size_t j = i; j < nrows; j++) {
			const struct row *q = &rows[j];
			if (!strcmp(q->scenario, scenario) && !strcmp(q->op, op) &&
			    !strcmp(q->dist, dist) && !strcmp(q->structure, r->structure))
				fprintf(gp, "%" PRIu64 " %g\n", q->n, q->ns > 0 ? q->ns : 1e-3);
		}
		fprintf(gp, "e\n");
	}
	return plot_finish(&pl, !first, report);
}

static void write_plots(const char *dir, const char *scenario, FILE *report)
{
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (strcmp(r->scenario, scenario) ||
		    seen_before(i, scenario, r->op, r->dist, NULL))
			continue;
		if (count_sizes(scenario, r->op, r->dist) < 2)
			continue;
		if (write_plot(dir, scenario, r->op, r->dist, report) < 0) {
			fprintf(report, "(plot for %s/%s not drawn: is gnuplot installed?)\n\n",
				r->op, r->dist);
		}
	}
}

static void machine_line(FILE *f)
{
	char model[256] = "unknown CPU";
	FILE *c = fopen("/proc/cpuinfo", "r");
	if (c) {
		char line[512];
		while (fgets(line, sizeof(line), c)) {
			if (!strncmp(line, "model name", 10)) {
				char *p = strchr(line, ':');
				if (p) {
					snprintf(model, sizeof(model), "%s", p + 2);
					model[strcspn(model, "\n")] = 0;
				}
				break;
			}
		}
		fclose(c);
	}
	fprintf(f, "Machine: %s, %ld cores online.\n", model,
		sysconf(_SC_NPROCESSORS_ONLN));
}

/* ---- what the report explains ------------------------------------------ */
/* What n counts in each scenario (the plots' x axis, the tables' n). */
static const struct {
	const char *scenario, *n;
} n_names[] = {
	{"gmem_convert", "pages converted, or attribute ranges for load"},
	{"ioreq_select", "ranges per server"},
	{"kvm_migrate", "guest pages"},
	{"limits", "entries"},
	{"memslot_hva", "slots"},
	{"rangemap_basic", "ranges"},
	{"rmap_fork", "mappings of one page (chain length)"},
	{"shadow_pages", "frames mapped"},
	{"vm_lifecycle", "slots"},
};

static const char *n_counts(const char *scenario)
{
	for (size_t i = 0; i < sizeof(n_names) / sizeof(n_names[0]); i++)
		if (!strcmp(n_names[i].scenario, scenario))
			return n_names[i].n;
	return "n";
}

/* Every structure a row may name: what it is or models, and where that
 * design lives. Ours are gm_*; the others are baselines (bench/baselines/,
 * our own re-implementations of the designs, or Debian's libraries). */
static const struct {
	const char *name, *what;
} glossary[] = {
	{"gm_itree", "gmtrack's RCU interval B+tree (itree.h)"},
	{"gm_pagemap", "gmtrack's adaptive radix map (pagemap.h)"},
	{"gm_rangemap", "gmtrack's B-tree range map (rangemap.h)"},
	{"gm_rangeset", "gmtrack's rangesets and groups (rangeset.h)"},
	{"gm_rmap", "gmtrack's one-word reverse maps (rmap.h)"},
	{"gm_space", "gmtrack's address space (space.h)"},
	{"augrb", "augmented red-black interval tree: Linux's interval_tree (KVM's hva -> memslot since 2021, kvmtool's MMIO dispatch)"},
	{"desc4", "KVM's 2010 rmap: inline pointer or chains of 4-entry descriptors"},
	{"flat", "a flat array indexed by key: the physical limit for dense keys"},
	{"hash256", "GVT-g's shadow-page table before its radix patch: 256 fixed hash buckets (DECLARE_HASHTABLE)"},
	{"judyl", "JudyL, Debian libjudy: the classic compressed radix array"},
	{"kvm14", "KVM's rmap today (pte_list): inline pointer or 14-entry 128-byte descriptors"},
	{"kvm2020", "KVM memslots before the 2021 scalable-memslots series: a sorted array copied on every change"},
	{"linear", "memslots scanned linearly: KVM's hva lookup before 2021"},
	{"openhash", "a good open-addressing hash table: the best point-lookup reference"},
	{"radix64", "a 64-way radix tree in the kernel's radix-tree/XArray style: GVT-g after its patch"},
	{"rbranges", "a red-black tree of ranges (BSD sys/tree.h): the seeds' proposed rangeset and range-map design"},
	{"rbtree", "a red-black tree of keys (BSD sys/tree.h, libbsd)"},
	{"sorted", "binary search over a sorted array: the best comparison search"},
	{"vecsnap", "rust-vmm vm-memory's GuestMemoryMmap (Firecracker, Cloud Hypervisor): a sorted Vec of regions, copied per change"},
	{"xaloop", "KVM's memory attributes today: an XArray stored one index at a time"},
	{"xenlist", "Xen's rangeset: a sorted linked list searched from the head"},
};

static const char *glossary_of(const char *name)
{
	for (size_t i = 0; i < sizeof(glossary) / sizeof(glossary[0]); i++)
		if (!strncmp(name, glossary[i].name, strlen(glossary[i].name)))
			return glossary[i].what;
	return NULL;
}

static bool row_names(const char *name, size_t before)
{
	for (size_t j = 0; j < before; j++)
		if (!strcmp(rows[j].structure, name))
			return true;
	return false;
}

static void write_glossary(FILE *f)
{
	fprintf(f, "## What the rows name\n\n| structure | what it is or models |\n|---|---|\n");
	for (size_t i = 0; i < nrows; i++) {
		if (row_names(rows[i].structure, i))
			continue;
		const char *what = glossary_of(rows[i].structure);
		fprintf(f, "| %s | %s |\n", rows[i].structure,
			what ? what : "(a variant; see its scenario's notes)");
	}
	fprintf(f, "\n");
}

/* The run's first section: per scenario, its answer (gmb_answer) or its
 * first target, and how many targets it met; then every shortfall. */
static void write_summary(FILE *f)
{
	fprintf(f, "## Summary\n\n");
	for (int i = 0; i < nscenarios; i++) {
		const char *name = scenarios[i]->name;
		int met = 0, all = 0;
		const struct target *first = NULL;
		for (size_t k = 0; k < ntargets; k++)
			if (!strcmp(targets[k].scenario, name)) {
				first = first ? first : &targets[k];
				all++;
				met += targets[k].verdict > 0;
			}
		const char *answer = NULL;
		for (size_t k = 0; k < nnotes; k++)
			if (notes[k].answer && !strcmp(notes[k].scenario, name))
				answer = notes[k].text;
		if (!all && !answer)
			continue;
		fprintf(f, "- **%s** (%d of %d targets met): ", name, met, all);
		if (answer)
			fprintf(f, "%s\n", answer);
		else if (first)
			fprintf(f, "%s: %s (%s).\n", first->what, first->measured,
				verdict_text(first->verdict));
	}
	fprintf(f, "\n### Targets that fall short or were not measured\n\n");
	bool any = false;
	for (size_t k = 0; k < ntargets; k++) {
		const struct target *t = &targets[k];
		if (t->verdict > 0)
			continue;
		if (!any)
			fprintf(f, "| scenario | target | measured | verdict |\n|---|---|---|---|\n");
		any = true;
		fprintf(f, "| %s | %s | %s | %s |\n", t->scenario, t->what, t->measured,
			verdict_text(t->verdict));
	}
	fprintf(f, any ? "\n" : "None: every target met.\n\n");
}

/* The stamp: what was measured, built how, on what. */
static void run_output(const char *cmd, char *buf, size_t len)
{
	snprintf(buf, len, "unknown");
	FILE *p = popen(cmd, "r");
	if (!p)
		return;
	if (fgets(buf, (int)len, p))
		buf[strcspn(buf, "\n")] = 0;
	else
		snprintf(buf, len, "unknown");
	pclose(p);
}

#ifdef GMB_HAVE_BUILD_H
#include "gmb_build.h"
#endif
#ifndef GMB_SOURCE_DIR
#define GMB_SOURCE_DIR "."
#endif
#ifndef GMB_CFLAGS
#define GMB_CFLAGS "unknown"
#endif

static void write_stamp(FILE *f)
{
	char commit[128], cmd[1200];
	snprintf(cmd, sizeof(cmd), "git -C '%s' describe --always --dirty --abbrev=12 2>/dev/null",
		 GMB_SOURCE_DIR);
	run_output(cmd, commit, sizeof(commit));
	struct utsname u;
	bool have_uname = uname(&u) == 0;
	fprintf(f, "- commit: `%s`\n", commit);
#if defined(__clang__)
	fprintf(f, "- compiler: clang %s, flags `%s`\n", __clang_version__, GMB_CFLAGS);
#elif defined(__GNUC__)
	fprintf(f, "- compiler: gcc %s, flags `%s`\n", __VERSION__, GMB_CFLAGS);
#endif
	fprintf(f, "- kernel: %s %s %s\n", have_uname ? u.sysname : "?",
		have_uname ? u.release : "?", have_uname ? u.machine : "?");
	fprintf(f, "- ");
	machine_line(f);
}

/* Memory against n: one plot per (scenario, dist) whose rows carry bytes
 * for at least two sizes; one line per structure, from its first op's rows. */
static bool bytes_seen_before(size_t i, const struct row *r)
{
	for (size_t j = 0; j < i; j++)
		if (!strcmp(rows[j].scenario, r->scenario) && !strcmp(rows[j].dist, r->dist) &&
		    !strcmp(rows[j].structure, r->structure) && rows[j].bytes >= 0)
			return true;
	return false;
}

static const char *first_op_with_bytes(const struct row *r)
{
	for (size_t j = 0; j < nrows; j++)
		if (!strcmp(rows[j].scenario, r->scenario) && !strcmp(rows[j].dist, r->dist) &&
		    !strcmp(rows[j].structure, r->structure) && rows[j].bytes >= 0)
			return rows[j].op;
	return r->op;
}

static int write_bytes_plot(const char *dir, const char *scenario, const char *dist,
			    FILE *report)
{
	struct plot pl;
	char title[300];
	snprintf(pl.base, sizeof(pl.base), "%s_bytes_%s", scenario, dist);
	snprintf(title, sizeof(title), "memory (%s)", dist);
	if (!plot_open(&pl, dir, scenario, title, "bytes per entry"))
		return -1;
	FILE *gp = pl.gp;
	int lines = 0;
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (strcmp(r->scenario, scenario) || strcmp(r->dist, dist) || r->bytes < 0 ||
		    bytes_seen_before(i, r))
			continue;
		fprintf(gp, "%s'-' using 1:2 with linespoints title '%s'", lines++ ? ", " : "",
			r->structure);
	}
	fprintf(gp, "\n");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (strcmp(r->scenario, scenario) || strcmp(r->dist, dist) || r->bytes < 0 ||
		    bytes_seen_before(i, r))
			continue;
		const char *op = first_op_with_bytes(r);
		for (size_t j = i; j < nrows; j++) {
			const struct row *q = &rows[j];
			if (!strcmp(q->scenario, scenario) && !strcmp(q->dist, dist) &&
			    !strcmp(q->structure, r->structure) && !strcmp(q->op, op) && q->bytes >= 0)
				fprintf(gp, "%" PRIu64 " %g\n", q->n, q->bytes > 0 ? q->bytes : 1e-3);
		}
		fprintf(gp, "e\n");
	}
	return plot_finish(&pl, lines > 0, report);
}

static void write_bytes_plots(const char *dir, const char *scenario, FILE *report)
{
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (strcmp(r->scenario, scenario) || r->bytes < 0)
			continue;
		bool dist_done = false;
		for (size_t j = 0; j < i && !dist_done; j++)
			dist_done = !strcmp(rows[j].scenario, scenario) &&
				    !strcmp(rows[j].dist, r->dist) && rows[j].bytes >= 0;
		if (dist_done || count_sizes(scenario, first_op_with_bytes(r), r->dist) < 2)
			continue;
		write_bytes_plot(dir, scenario, r->dist, report);
	}
}

/* ---- main ---------------------------------------------------------------- */
static bool scenario_wanted(const struct gmb_scenario *s, const char *const *wanted,
			    int nwanted)
{
	bool run = nwanted == 0;
	for (int j = 0; j < nwanted; j++)
		run |= !strcmp(wanted[j], s->name);
	return run;
}

/* One plain line per scenario on stderr, with what is left: the mean time
 * of the scenarios done so far times the ones to come. */
static void log_progress(const struct gmb_scenario *s, int done, int total,
			 uint64_t start_ns)
{
	double elapsed = (gmb_now_ns() - start_ns) / 1e9;
	fprintf(stderr, "gmbench: scenario %d of %d: %s (%.0f s so far", done + 1, total,
		s->name, elapsed);
	if (done > 0)
		fprintf(stderr, ", about %.0f s left", elapsed / done * (total - done));
	fprintf(stderr, ")\n");
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gmbench [options]\n"
		"  --list             list scenarios and exit\n"
		"  --scenario NAME    run NAME (repeatable; default: all)\n"
		"  --size N           largest n a scenario uses (scenario default otherwise)\n"
		"  --seed S           workload seed (default 42)\n"
		"  --repeat R         timed repeats, median reported (default 5)\n"
		"  --quick            small sizes and one repeat: a smoke run\n"
		"  --csv FILE         also write the rows to FILE\n"
		"  --out DIR          report directory (default out)\n");
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	double d = strtod(s, &end); /* accepts 1e6 as well as 1000000 */
	if (errno || *end || d < 0 || d > 1.8e19)
		return false;
	*v = (uint64_t)d;
	return true;
}

static const struct gmb_scenario *find_scenario(const char *name)
{
	for (int i = 0; i < nscenarios; i++)
		if (!strcmp(scenarios[i]->name, name))
			return scenarios[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const char *wanted[GMB_MAX_SCENARIOS];
	int nwanted = 0;
	bool list = false;
	qsort(scenarios, (size_t)nscenarios, sizeof(scenarios[0]), scenario_cmp);

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t v;
		if (!strcmp(a, "--list")) {
			list = true;
		} else if (!strcmp(a, "--quick")) {
			opt.quick = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (val && !strcmp(a, "--scenario")) {
			if (!find_scenario(val)) {
				fprintf(stderr, "gmbench: no scenario '%s' (see --list)\n", val);
				return 2;
			}
			if (nwanted < GMB_MAX_SCENARIOS)
				wanted[nwanted++] = val;
			i++;
		} else if (val && !strcmp(a, "--size") && parse_u64(val, &v) && v > 0) {
			opt.size = v;
			opt.size_given = true;
			i++;
		} else if (val && !strcmp(a, "--seed") && parse_u64(val, &v)) {
			opt.seed = v;
			i++;
		} else if (val && !strcmp(a, "--repeat") && parse_u64(val, &v) &&
			   v >= 1 && v <= 1000) {
			opt.repeat = (int)v;
			i++;
		} else if (val && !strcmp(a, "--csv")) {
			opt.csv = val;
			i++;
		} else if (val && !strcmp(a, "--out")) {
			opt.out = val;
			i++;
		} else {
			fprintf(stderr, "gmbench: bad argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (list) {
		for (int i = 0; i < nscenarios; i++)
			printf("%-16s %s\n", scenarios[i]->name, scenarios[i]->description);
		return 0;
	}
	if (opt.quick)
		opt.repeat = 1;
	if (mkdir(opt.out, 0777) && errno != EEXIST) {
		fprintf(stderr, "gmbench: %s: %s\n", opt.out, strerror(errno));
		return 1;
	}
	char path[1024];
	snprintf(path, sizeof(path), "%s/report.md", opt.out);
	/* The scenarios' sections are gathered first: the report opens with
	 * the summary of all of them. */
	char *body_text = NULL;
	size_t body_len = 0;
	FILE *report = open_memstream(&body_text, &body_len);
	if (!report) {
		perror("gmbench: open_memstream");
		return 1;
	}
	time_t now = time(NULL);
	char date[64];
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));

	int bad = 0, short_targets = 0, met = 0, total = 0, done = 0;
	for (int i = 0; i < nscenarios; i++)
		total += scenario_wanted(scenarios[i], wanted, nwanted);
	uint64_t run_start = gmb_now_ns();
	for (int i = 0; i < nscenarios; i++) {
		const struct gmb_scenario *s = scenarios[i];
		if (!scenario_wanted(s, wanted, nwanted))
			continue;
		log_progress(s, done, total, run_start);
		done++;
		struct gmb_ctx ctx = {.scenario = s, .first_row = nrows,
				      .start_ns = gmb_now_ns()};
		size_t first_target = ntargets;
		if (!run_scenario(s, &ctx))
			bad++;
		if (ctx.progress_shown && progress_on_tty())
			fprintf(stderr, "\r\033[K");
		double secs = (gmb_now_ns() - ctx.start_ns) / 1e9;

		printf("\n== %s: %s (%.1f s, reference %s)\n", s->name,
		       s->description, secs, ctx.reference ? ctx.reference : "-");
		print_table(stdout, &ctx, false);
		print_targets(stdout, s->name, false);
		fflush(stdout);

		fprintf(report, "## %s\n\n%s. Ran in %.1f s. Reference row: `%s`.\n\n",
			s->name, s->description, secs,
			ctx.reference ? ctx.reference : "-");
		print_table(report, &ctx, true);
		print_targets(report, s->name, true);
		for (size_t k = 0; k < nnotes; k++)
			if (!strcmp(notes[k].scenario, s->name))
				fprintf(report, "\n- %s", notes[k].text);
		fprintf(report, "\n\n");
		write_plots(opt.out, s->name, report);
		write_bytes_plots(opt.out, s->name, report);
		for (size_t k = first_target; k < ntargets; k++) {
			met += targets[k].verdict > 0;
			short_targets += targets[k].verdict <= 0;
		}
		if (nrows == ctx.first_row) {
			fprintf(stderr, "gmbench: scenario %s produced no rows\n", s->name);
			bad++;
		}
		free(ctx.reference);
	}
	fclose(report);
	FILE *out = open_out(path);
	if (!out)
		return 1;
	fprintf(out, "# gmbench report\n\n%s; seed %" PRIu64 ", repeat %d (median)%s%s.\n\n",
		date, opt.seed, opt.repeat, opt.quick ? ", quick" : "",
		opt.size_given ? ", --size given" : "");
	write_stamp(out);
	fprintf(out, "\n%d targets met, %d falling short or not measured.\n\n", met,
		short_targets);
	write_summary(out);
	fprintf(out, "Each table's last column is the row's time divided by the "
		     "reference structure's time for the same op, n and dist; the "
		     "spread is the fastest and the slowest of the timed runs whose "
		     "median is the row (\"-\" where the scenario timed the row "
		     "itself).\n\n");
	fwrite(body_text, 1, body_len, out);
	free(body_text);
	write_glossary(out);
	fclose(out);
	printf("\ntargets: %d met, %d falling short or not measured\n", met,
	       short_targets);

	snprintf(path, sizeof(path), "%s/results.csv", opt.out);
	if (write_csv(path))
		bad++;
	snprintf(path, sizeof(path), "%s/targets.csv", opt.out);
	if (write_targets_csv(path))
		bad++;
	if (opt.csv && write_csv(opt.csv))
		bad++;
	printf("wrote %s/report.md, %s/results.csv, %s/targets.csv and plots in %s/\n",
	       opt.out, opt.out, opt.out, opt.out);
	return bad ? 1 : 0;
}
