/*
 * vmm/vm.h — one gmvm virtual machine: its KVM VM, its gm_space-backed
 * memory (vmm/memory.h), its devices (vmm/device.h), its vCPU threads and
 * their control (start, pause for migration, stop), the built-in guest's
 * loading, and the checksum check at the end.
 *
 * Slots of a VM: 0 the boot slot (page tables, parameters, code, stacks:
 * GMVM_BOOT_BYTES at gpa 0), 1..n guest RAM (one host mapping cut into n
 * slots from GMVM_RAM_GPA), then an optional sparse slot (a MAP_NORESERVE
 * mapping: only the pages the guest touches become real); ids from
 * GMVM_HOTPLUG_ID on belong to the hotplug thread (vmm/hotplug.c), backed
 * by a pool mapping.
 */
#ifndef GMVM_VM_H
#define GMVM_VM_H

#include "device.h"
#include "kvm.h"
#include "layout.h"
#include "memory.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#define GMVM_HOTPLUG_ID 1000u
#define GMVM_MAX_REGIONS 16
#define GMVM_MAX_EXTRA_SLOTS 8

struct gmvm_config {
	unsigned nvcpus;
	uint64_t ram_bytes;
	unsigned ram_slots;
	uint64_t sparse_bytes;   /* 0: none; else the workload runs in it */
	bool memfd;
	int workload;            /* W_* */
	uint64_t span;           /* bytes each vCPU writes (0: its share of RAM) */
	uint64_t rounds, writes, hot_bytes, seed, delay, dma;
	uint32_t ring_entries;   /* > 0: dirty ring mode */
	bool no_manual_protect;
	bool dirty_log;          /* slots log dirty pages from creation */
	bool no_testdev;         /* leave the test device out (bad-input test) */
	bool quiet, verbose;
	bool cpl0;               /* run the guest at CPL 0 (PVM emulates it: slow) */
	uint64_t pool_bytes;     /* hotplug pool (0: none) */
	FILE *serial_out;
	unsigned timeout_s;
	unsigned nextra;         /* extra slots (--slot gpa:size[:ro]) */
	struct { uint64_t gpa, bytes; bool readonly; } extra[GMVM_MAX_EXTRA_SLOTS];
};

struct gmvm_vm;

struct gmvm_vcpu {
	struct gmvm_vm *vm;
	unsigned index;
	struct gmvm_kvm_vcpu k;
	pthread_t thread;
	bool thread_started;
	_Atomic bool finished;   /* thread left its loop */
	_Atomic bool parked;
	bool failed;
	char error[512];
	uint64_t exits, exits_io, exits_mmio, exits_ring_full, unassigned_mmio;
	pthread_mutex_t ring_lock;
};

struct gmvm_vm {
	struct gmvm_config cfg;
	struct gmvm_kvm kvm;
	struct gmvm_mem mem;
	struct gmvm_serial serial;
	struct gmvm_testdev dev;
	struct gmvm_exitport exitport;
	struct gmvm_ram region[GMVM_MAX_REGIONS]; /* boot, ram, sparse, pool */
	unsigned nvcpus;
	struct gmvm_vcpu vcpu[GMVM_MAX_VCPUS];
	uint64_t work_base, work_stride, work_span;
	/* run control */
	pthread_mutex_t ctl;
	pthread_cond_t ctl_cond;
	_Atomic bool pause_req, stop_req;
	bool created;
};

enum { REGION_BOOT, REGION_RAM, REGION_SPARSE, REGION_POOL, REGION_EXTRA };

/* Default configuration. */
void gmvm_config_default(struct gmvm_config *c);
/* Checks a configuration against the host and the layout; message in err. */
int gmvm_config_check(const struct gmvm_config *c, char *err, size_t errlen);

/*
 * gmvm_vm_create — KVM VM, memory and slots, devices, vCPUs. incoming:
 * a migration destination (nothing loaded: memory and vCPU state come from
 * the source). 0 or -errno with a message in err; on error nothing is left.
 */
int gmvm_vm_create(struct gmvm_vm *vm, const struct gmvm_config *cfg, bool incoming,
		   char *err, size_t errlen);
void gmvm_vm_destroy(struct gmvm_vm *vm);

/* Starts the vCPU threads (those whose device bank is not done). */
int gmvm_vm_start(struct gmvm_vm *vm, char *err, size_t errlen);
/* Waits for the vCPUs to finish (or the timeout: then -ETIMEDOUT). */
int gmvm_vm_wait(struct gmvm_vm *vm, char *err, size_t errlen);
/* Stops every vCPU at an exit with its state complete (pending I/O done),
 * and returns once all are parked or finished. */
void gmvm_vm_pause(struct gmvm_vm *vm);
void gmvm_vm_resume(struct gmvm_vm *vm);
/* Stops the threads for good (they finish). */
void gmvm_vm_stop(struct gmvm_vm *vm);

/* After the run: every vCPU reported a checksum equal to the host's over
 * its span. *combined: FNV of the per-vCPU checksums. 0 or -EIO. */
int gmvm_vm_check(struct gmvm_vm *vm, uint64_t *combined, char *err, size_t errlen);

/* The host address in vm of hva in peer (same region, same offset), or 0. */
uint64_t gmvm_vm_peer_hva(const struct gmvm_vm *vm, const struct gmvm_vm *peer, uint64_t hva);

/* vCPU state, moved by migration. */
struct gmvm_vcpu_state;
struct gmvm_vcpu_state *gmvm_vcpu_state_new(void);
void gmvm_vcpu_state_free(struct gmvm_vcpu_state *st);
int gmvm_vcpu_save(struct gmvm_vcpu *v, struct gmvm_vcpu_state *st, char *err, size_t errlen);
int gmvm_vcpu_load(struct gmvm_vcpu *v, const struct gmvm_vcpu_state *st, char *err,
		   size_t errlen);

/* Reports an exit gmvm cannot handle: reason, suberror, RIP, instruction
 * bytes read from guest memory through gm_space. Into v->error. */
void gmvm_vcpu_report(struct gmvm_vcpu *v, const char *what);

/* Host-side harvest of a vCPU's dirty ring into gm_space (vmm/dirty.c);
 * returns entries collected. Caller resets the rings (KVM_RESET_DIRTY_RINGS). */
long gmvm_ring_collect(struct gmvm_vm *vm, struct gmvm_vcpu *v);

void *gmvm_vcpu_thread(void *arg);

#endif
