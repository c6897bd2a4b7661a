/*
 * vmm/layout.h — the guest-physical layout gmvm builds and the ABI between
 * gmvm and its built-in guest (vmm/guest.S): where the page tables, the
 * parameter page, the code and the stacks are, the parameter offsets, the
 * test device's registers and commands. Included by C and by the guest's
 * assembler source (through the C preprocessor), so: #defines only.
 *
 *   gpa 0x000500  GDT (null, code64, data, user code64, user data)
 *       0x001000  PML4      0x002000 PDPT (one: 512 GiB mapped at most)
 *       0x008000  parameter page (P_* below; progress words written by guest)
 *       0x010000  guest code (entry: rdi = vCPU index, rsi = parameter page)
 *       0x040000  stacks, 4 KiB per vCPU (rsp = top of its page)
 *       0x100000  page directories, one 4 KiB page per GiB mapped (2 MiB pages)
 *       0x300000  end of the boot slot (slot 0)
 *       0x3f0000  test device (MMIO, no memory behind it): 256-byte bank per vCPU
 *       0x400000  guest RAM slots start here
 *   port 0x3f8   16550-style serial port (THR at +0, LSR at +5)
 *   port 0x501   exit port: a write stops the VM with that exit status
 *
 * The guest runs in 64-bit mode at CPL 3 with IOPL 3 (PIO allowed) and
 * user-accessible identity pages: under PVM (KVM without VMX/SVM) CPL-3
 * code runs natively while CPL-0 code of a guest that is not PVM-aware is
 * emulated instruction by instruction (gmvm --cpl0 shows it: ~20x slower).
 */
#ifndef GMVM_LAYOUT_H
#define GMVM_LAYOUT_H

#define GMVM_GDT_GPA 0x500
#define GMVM_PML4_GPA 0x1000
#define GMVM_PDPT_GPA 0x2000
#define GMVM_PARAMS_GPA 0x8000
#define GMVM_CODE_GPA 0x10000
#define GMVM_CODE_MAX 0x30000
#define GMVM_STACKS_GPA 0x40000
#define GMVM_PD_GPA 0x100000
#define GMVM_BOOT_BYTES 0x300000
#define GMVM_MAX_MAPPED_GIB 512
#define GMVM_DEV_GPA 0x3f0000
#define GMVM_DEV_BANK 0x100
#define GMVM_MAX_VCPUS 64
#define GMVM_DEV_BYTES (GMVM_DEV_BANK * GMVM_MAX_VCPUS)
#define GMVM_RAM_GPA 0x400000
#define GMVM_SERIAL_PORT 0x3f8
#define GMVM_SERIAL_PORTS 8
#define GMVM_EXIT_PORT 0x501

/* parameter page: 64-bit words at these offsets */
#define P_MAGIC 0x00
#define P_WORKLOAD 0x08   /* W_* */
#define P_BASE 0x10       /* gpa of vCPU 0's region */
#define P_STRIDE 0x18     /* bytes between two vCPUs' regions */
#define P_SPAN 0x20       /* bytes each vCPU writes and checksums, from its region */
#define P_ROUNDS 0x28
#define P_WRITES 0x30     /* writes per round (random, hot) */
#define P_SEED 0x38
#define P_DELAY 0x40      /* spin iterations after each write */
#define P_DMA 0x48        /* bytes the device fills at the region start at the end (0: none) */
#define P_NVCPUS 0x50
#define P_QUIET 0x58      /* 1: vCPU 0 prints nothing on the serial port */
#define P_PROGRESS 0x100  /* + 8 * vCPU: rounds done (written by the guest) */
#define GMVM_PARAMS_MAGIC 0x31504d56474d47ull /* "GMGVMP1" */

#define W_SEQ 1
#define W_RANDOM 2
#define W_HOT 3
#define W_FAULT 4 /* a privileged instruction at CPL 3: how gmvm reports an exit it cannot handle */

/* test device bank registers (64-bit) */
#define R_ID 0x00         /* read: GMVM_DEV_ID */
#define R_DATA 0x08       /* read: gmvm_dev_data(ARG0) */
#define R_ARG0 0x10
#define R_ARG1 0x18
#define R_ARG2 0x20
#define R_CMD 0x28        /* write: C_* */
#define R_STATUS 0x30     /* read: 0 or a negative errno of the last command */
#define R_RESULT 0x38     /* read: the result of C_DMA_SUM */
#define GMVM_DEV_ID 0x5645445456474d47ull /* "GMGVTDEV" */
#define GMVM_DEV_DATA_MUL 0x9e3779b97f4a7c15ull /* DATA = (ARG0 ^ bank) * this */

#define C_CHECKSUM 1      /* ARG0 = checksum of the vCPU's span */
#define C_DMA_FILL 2      /* fill gpa ARG0, ARG1 bytes, with byte ARG2 */
#define C_DMA_SUM 3       /* RESULT := checksum of gpa ARG0, ARG1 bytes (read DMA) */
#define C_DONE 4          /* this vCPU has finished */

/* checksum: FNV-1a over 64-bit words */
#define GMVM_FNV_BASIS 0xcbf29ce484222325ull
#define GMVM_FNV_PRIME 0x100000001b3ull

#endif
