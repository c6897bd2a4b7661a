/*
 * vmm/kvm.c — the /dev/kvm layer (see kvm.h): VM and vCPU creation with
 * the capabilities gmvm uses (in-kernel irqchip, manual dirty-log
 * protection or the dirty ring), memslot and dirty-log ioctls, the probe
 * of KVM's largest gfn, exit-reason names. Every ioctl error comes back as
 * a negative errno; nothing here exits the process.
 */
#define _GNU_SOURCE
#include "kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int xioctl(int fd, unsigned long req, void *arg)
{
	int rc;
	do
		rc = ioctl(fd, req, arg);
	while (rc < 0 && errno == EINTR);
	return rc < 0 ? -errno : rc;
}

const char *gmvm_kvm_unusable(void)
{
	static char why[160];
	static int checked;
	if (checked)
		return why[0] ? why : NULL;
	checked = 1;
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, sizeof(why), "open /dev/kvm: %s", strerror(errno));
		return why;
	}
	int api = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(why, sizeof(why), "KVM API version %d, need %d", api, KVM_API_VERSION);
	} else {
		int vm = ioctl(fd, KVM_CREATE_VM, 0);
		if (vm < 0)
			snprintf(why, sizeof(why), "KVM_CREATE_VM: %s", strerror(errno));
		else
			close(vm);
	}
	close(fd);
	return why[0] ? why : NULL;
}

static int enable_cap(int vm, uint32_t cap, uint64_t arg0)
{
	struct kvm_enable_cap c = {.cap = cap, .args = {arg0}};
	return xioctl(vm, KVM_ENABLE_CAP, &c);
}

int gmvm_kvm_open(struct gmvm_kvm *k, uint32_t ring_entries, bool no_manual,
		  const char **why)
{
	memset(k, 0, sizeof(*k));
	k->vm_fd = -1;
	k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm_fd < 0) {
		*why = "cannot open /dev/kvm";
		return -errno;
	}
	int rc = xioctl(k->kvm_fd, KVM_CREATE_VM, 0);
	if (rc < 0) {
		*why = "KVM_CREATE_VM failed";
		goto fail;
	}
	k->vm_fd = rc;
	rc = xioctl(k->vm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_NR_MEMSLOTS);
	k->max_slots = rc > 0 ? (uint32_t)rc : 32;
	k->vcpu_mmap_size = xioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k->vcpu_mmap_size <= 0) {
		rc = k->vcpu_mmap_size ? k->vcpu_mmap_size : -EINVAL;
		*why = "KVM_GET_VCPU_MMAP_SIZE failed";
		goto fail;
	}
	(void)xioctl(k->vm_fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)0xfffbd000);
	rc = xioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0);
	if (rc < 0) {
		*why = "KVM_CREATE_IRQCHIP failed";
		goto fail;
	}
	if (ring_entries) {
		int max = xioctl(k->vm_fd, KVM_CHECK_EXTENSION,
				 (void *)(uintptr_t)KVM_CAP_DIRTY_LOG_RING);
		uint64_t bytes = (uint64_t)ring_entries * sizeof(struct kvm_dirty_gfn);
		if (max <= 0 || bytes > (uint64_t)max || (ring_entries & (ring_entries - 1))) {
			rc = -ENOTSUP;
			*why = max <= 0 ? "KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING)"
					: "dirty ring size not a power of two or past KVM's maximum";
			goto fail;
		}
		rc = enable_cap(k->vm_fd, KVM_CAP_DIRTY_LOG_RING, bytes);
		if (rc < 0) {
			*why = "enabling KVM_CAP_DIRTY_LOG_RING failed";
			goto fail;
		}
		k->ring_entries = ring_entries;
	} else if (!no_manual) {
		int caps = xioctl(k->vm_fd, KVM_CHECK_EXTENSION,
				  (void *)(uintptr_t)KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
		if (caps > 0 && enable_cap(k->vm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
					   KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) == 0)
			k->manual_protect = true;
	}
	k->max_gfn = gmvm_kvm_probe_max_gfn();
	return 0;
fail:
	gmvm_kvm_close(k);
	return rc;
}

void gmvm_kvm_close(struct gmvm_kvm *k)
{
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->kvm_fd >= 0)
		close(k->kvm_fd);
	k->vm_fd = k->kvm_fd = -1;
}

int gmvm_kvm_set_slot(struct gmvm_kvm *k, uint32_t id, uint32_t kvm_flags,
		      uint64_t gpa, uint64_t bytes, uint64_t hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = id, .flags = kvm_flags, .guest_phys_addr = gpa,
		.memory_size = bytes, .userspace_addr = hva,
	};
	int rc = xioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
	return rc < 0 ? rc : 0;
}

int gmvm_kvm_get_dirty(struct gmvm_kvm *k, uint32_t id, uint64_t npages,
		       uint64_t *bitmap, bool clear)
{
	struct kvm_dirty_log d = {.slot = id};
	d.dirty_bitmap = bitmap;
	int rc = xioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &d);
	if (rc < 0 || !k->manual_protect || !clear)
		return rc < 0 ? rc : 0;
	/* manual protection: re-protect what we took, 64-page aligned chunks */
	struct kvm_clear_dirty_log c = {.slot = id, .first_page = 0,
					.num_pages = (uint32_t)npages};
	c.dirty_bitmap = bitmap;
	if (npages > UINT32_MAX)
		return -E2BIG;
	rc = xioctl(k->vm_fd, KVM_CLEAR_DIRTY_LOG, &c);
	return rc < 0 ? rc : 0;
}

uint64_t gmvm_kvm_probe_max_gfn(void)
{
	static uint64_t cached;
	if (cached)
		return cached;
	int kfd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kfd < 0)
		return (1ull << 36) - 1;
	int vm = ioctl(kfd, KVM_CREATE_VM, 0);
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t lo = 0, hi = (1ull << 52) - 1; /* lo accepted, hi + 1 refused */
	if (vm >= 0 && page != MAP_FAILED) {
		struct gmvm_kvm k = {.vm_fd = vm};
		if (gmvm_kvm_set_slot(&k, 0, 0, hi << 12, 4096, (uintptr_t)page) == 0) {
			lo = hi;
			gmvm_kvm_set_slot(&k, 0, 0, hi << 12, 0, (uintptr_t)page);
		}
		while (lo < hi) {
			uint64_t mid = lo + (hi - lo + 1) / 2;
			if (gmvm_kvm_set_slot(&k, 0, 0, mid << 12, 4096, (uintptr_t)page) == 0) {
				gmvm_kvm_set_slot(&k, 0, 0, mid << 12, 0, (uintptr_t)page);
				lo = mid;
			} else {
				hi = mid - 1;
			}
		}
	}
	if (page != MAP_FAILED)
		munmap(page, 4096);
	if (vm >= 0)
		close(vm);
	close(kfd);
	cached = lo ? lo : (1ull << 36) - 1;
	return cached;
}

int gmvm_kvm_vcpu_create(struct gmvm_kvm *k, unsigned index, struct gmvm_kvm_vcpu *v)
{
	memset(v, 0, sizeof(*v));
	v->fd = xioctl(k->vm_fd, KVM_CREATE_VCPU, (void *)(uintptr_t)index);
	if (v->fd < 0)
		return v->fd;
	v->run = mmap(NULL, (size_t)k->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED) {
		int rc = -errno;
		close(v->fd);
		return rc;
	}
	if (k->ring_entries) {
		size_t bytes = (size_t)k->ring_entries * sizeof(struct kvm_dirty_gfn);
		v->ring = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd,
			       (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
		if (v->ring == MAP_FAILED) {
			int rc = -errno;
			munmap(v->run, (size_t)k->vcpu_mmap_size);
			close(v->fd);
			return rc;
		}
		v->ring_entries = k->ring_entries;
	}
	return 0;
}

void gmvm_kvm_vcpu_destroy(struct gmvm_kvm *k, struct gmvm_kvm_vcpu *v)
{
	if (v->ring)
		munmap(v->ring, (size_t)v->ring_entries * sizeof(struct kvm_dirty_gfn));
	if (v->run)
		munmap(v->run, (size_t)k->vcpu_mmap_size);
	if (v->fd > 0)
		close(v->fd);
	memset(v, 0, sizeof(*v));
}

const char *gmvm_exit_name(uint32_t reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "KVM_EXIT_UNKNOWN",
		[KVM_EXIT_EXCEPTION] = "KVM_EXIT_EXCEPTION",
		[KVM_EXIT_IO] = "KVM_EXIT_IO",
		[KVM_EXIT_HYPERCALL] = "KVM_EXIT_HYPERCALL",
		[KVM_EXIT_DEBUG] = "KVM_EXIT_DEBUG",
		[KVM_EXIT_HLT] = "KVM_EXIT_HLT",
		[KVM_EXIT_MMIO] = "KVM_EXIT_MMIO",
		[KVM_EXIT_IRQ_WINDOW_OPEN] = "KVM_EXIT_IRQ_WINDOW_OPEN",
		[KVM_EXIT_SHUTDOWN] = "KVM_EXIT_SHUTDOWN",
		[KVM_EXIT_FAIL_ENTRY] = "KVM_EXIT_FAIL_ENTRY",
		[KVM_EXIT_INTR] = "KVM_EXIT_INTR",
		[KVM_EXIT_SET_TPR] = "KVM_EXIT_SET_TPR",
		[KVM_EXIT_TPR_ACCESS] = "KVM_EXIT_TPR_ACCESS",
		[KVM_EXIT_NMI] = "KVM_EXIT_NMI",
		[KVM_EXIT_INTERNAL_ERROR] = "KVM_EXIT_INTERNAL_ERROR",
		[KVM_EXIT_OSI] = "KVM_EXIT_OSI",
		[KVM_EXIT_WATCHDOG] = "KVM_EXIT_WATCHDOG",
		[KVM_EXIT_EPR] = "KVM_EXIT_EPR",
		[KVM_EXIT_SYSTEM_EVENT] = "KVM_EXIT_SYSTEM_EVENT",
		[KVM_EXIT_IOAPIC_EOI] = "KVM_EXIT_IOAPIC_EOI",
		[KVM_EXIT_HYPERV] = "KVM_EXIT_HYPERV",
		[KVM_EXIT_X86_RDMSR] = "KVM_EXIT_X86_RDMSR",
		[KVM_EXIT_X86_WRMSR] = "KVM_EXIT_X86_WRMSR",
		[KVM_EXIT_DIRTY_RING_FULL] = "KVM_EXIT_DIRTY_RING_FULL",
		[KVM_EXIT_AP_RESET_HOLD] = "KVM_EXIT_AP_RESET_HOLD",
		[KVM_EXIT_X86_BUS_LOCK] = "KVM_EXIT_X86_BUS_LOCK",
		[KVM_EXIT_XEN] = "KVM_EXIT_XEN",
		[KVM_EXIT_NOTIFY] = "KVM_EXIT_NOTIFY",
	};
	if (reason < sizeof(names) / sizeof(names[0]) && names[reason])
		return names[reason];
	return "unknown exit reason";
}
