/*
 * vmm/guest.S — gmvm's built-in guest: 64-bit long-mode code entered
 * directly by the VMM (KVM_SET_SREGS with paging on, identity page
 * tables), one copy per vCPU. Entry: rdi = vCPU index, rsi = parameter
 * page (vmm/layout.h). Each vCPU writes its own region [base + i*stride,
 * + span): a sequential sweep (one word per page per round), random writes
 * (xorshift64*) or writes into a hot set, `rounds` rounds, spinning
 * `delay` iterations after each write, publishing rounds done in the
 * parameter page. Then: optional device DMA fill of the region start, a
 * read-DMA checksum by the device compared with its own, the checksum
 * reported to the test device (MMIO), DONE, and cli/hlt forever.
 * vCPU 0 also talks to the serial port (PIO 0x3f8).
 * Registers: r15 params, r14 vCPU index, r13 device bank, r12 region
 * base, r11 span bytes, r10 PRNG state, r9 round.
 */
#include "layout.h"

	.text
	.code64
	.globl _start
_start:
	mov %rsi, %r15
	mov %rdi, %r14
	mov %rdi, %r13
	shl $8, %r13
	add $GMVM_DEV_GPA, %r13
	mov P_STRIDE(%r15), %rax
	imul %r14, %rax
	add P_BASE(%r15), %rax
	mov %rax, %r12
	mov P_SPAN(%r15), %r11
	mov P_SEED(%r15), %r10
	lea 1(%r14), %rax
	mov $GMVM_DEV_DATA_MUL, %rcx
	imul %rcx, %rax
	xor %rax, %r10
	or $1, %r10

	/* the device answers: its id, and DATA = (ARG0 ^ bank) * MUL */
	movabs $GMVM_DEV_ID, %rax
	cmp R_ID(%r13), %rax
	jne no_device
	mov $0x1234, %rax
	mov %rax, R_ARG0(%r13)
	mov R_DATA(%r13), %rbx
	xor %r14, %rax
	mov $GMVM_DEV_DATA_MUL, %rcx
	imul %rcx, %rax
	cmp %rax, %rbx
	jne bad_data

	lea msg_hello(%rip), %rsi
	call say

	xor %r9, %r9
round_loop:
	cmp P_ROUNDS(%r15), %r9
	jae rounds_done
	mov P_WORKLOAD(%r15), %rax
	cmp $W_SEQ, %rax
	je do_seq
	cmp $W_RANDOM, %rax
	je do_random
	cmp $W_HOT, %rax
	je do_random
	cmp $W_FAULT, %rax
	jne bad_workload
	hlt                     /* #GP at CPL 3, no IDT: the VMM reports the exit */
	jmp bad_workload
round_next:
	inc %r9
	mov %r9, P_PROGRESS(%r15,%r14,8)
	jmp round_loop

/* sequential sweep: word (round * 8) % 4096 of every page, value (round+1)*MUL ^ address */
do_seq:
	mov %r9, %rdx
	shl $3, %rdx
	and $4095, %rdx
	add %r12, %rdx          /* address */
	mov %r12, %rbx
	add %r11, %rbx          /* end */
	lea 1(%r9), %rcx
	mov $GMVM_DEV_DATA_MUL, %rax
	imul %rax, %rcx         /* (round+1)*MUL */
1:	cmp %rbx, %rdx
	jae round_next
	mov %rcx, %rax
	xor %rdx, %rax
	mov %rax, (%rdx)
	call spin
	add $4096, %rdx
	jmp 1b

/* random / hot: `writes` words at random positions of the span (hot: of
 * the first P_SPAN bytes too: gmvm sets span to the hot set's size) */
do_random:
	mov P_WRITES(%r15), %rbx
	mov %r11, %rsi
	shr $3, %rsi            /* words in span */
1:	test %rbx, %rbx
	jz round_next
	call prng               /* rax = next */
	mov %rax, %rcx
	xor %rdx, %rdx
	div %rsi                /* rdx = word index */
	mov %rcx, (%r12,%rdx,8)
	call spin
	dec %rbx
	jmp 1b

rounds_done:
	/* the device fills the region start (write DMA) */
	mov P_DMA(%r15), %rax
	test %rax, %rax
	jz 2f
	mov %r12, R_ARG0(%r13)
	mov %rax, R_ARG1(%r13)
	mov %r14, %rax
	add $0xa5, %rax
	mov %rax, R_ARG2(%r13)
	movq $C_DMA_FILL, R_CMD(%r13)
	mov R_STATUS(%r13), %rax
	test %rax, %rax
	jnz bad_dma
2:
	/* our checksum of the span */
	mov %r12, %rsi
	mov %r11, %rcx
	call fnv
	mov %rax, %rbp
	/* the device's checksum of the same bytes (read DMA) must agree */
	mov %r12, R_ARG0(%r13)
	mov %r11, R_ARG1(%r13)
	movq $C_DMA_SUM, R_CMD(%r13)
	mov R_STATUS(%r13), %rax
	test %rax, %rax
	jnz bad_dma
	cmp R_RESULT(%r13), %rbp
	jne bad_sum
	mov %rbp, R_ARG0(%r13)
	movq $C_CHECKSUM, R_CMD(%r13)
	lea msg_done(%rip), %rsi
	call say
finish:
	movq $C_DONE, R_CMD(%r13)
halt:
	cli
	hlt
	jmp halt

no_device:
	lea msg_nodev(%rip), %rsi
	call say_always
	mov $GMVM_EXIT_PORT, %dx
	mov $3, %al
	out %al, %dx
	jmp halt
bad_data:
	lea msg_baddata(%rip), %rsi
	jmp fail
bad_workload:
	lea msg_badwl(%rip), %rsi
	jmp fail
bad_dma:
	lea msg_baddma(%rip), %rsi
	jmp fail
bad_sum:
	lea msg_badsum(%rip), %rsi
fail:
	call say_always
	jmp finish

/* rax = FNV-1a over the rcx bytes (a multiple of 8) at rsi; clobbers rdx, rdi */
fnv:
	movabs $GMVM_FNV_BASIS, %rax
	movabs $GMVM_FNV_PRIME, %rdi
	shr $3, %rcx
1:	test %rcx, %rcx
	jz 2f
	xor (%rsi), %rax
	imul %rdi, %rax
	add $8, %rsi
	dec %rcx
	jmp 1b
2:	ret

/* rax = xorshift64* of r10 (updated) */
prng:
	mov %r10, %rax
	shr $12, %rax
	xor %rax, %r10
	mov %r10, %rax
	shl $25, %rax
	xor %rax, %r10
	mov %r10, %rax
	shr $27, %rax
	xor %rax, %r10
	movabs $0x2545f4914f6cdd1d, %rax
	imul %r10, %rax
	ret

/* spins P_DELAY iterations */
spin:
	mov P_DELAY(%r15), %rax
1:	test %rax, %rax
	jz 2f
	dec %rax
	jmp 1b
2:	ret

/* prints the NUL-terminated string at rsi on the serial port (vCPU 0,
 * unless quiet); say_always: any vCPU, always */
say:
	test %r14, %r14
	jnz 9f
	cmpq $0, P_QUIET(%r15)
	jne 9f
say_always:
	mov $GMVM_SERIAL_PORT, %dx
1:	movb (%rsi), %bl
	test %bl, %bl
	jz 9f
	add $5, %dx             /* LSR: wait for THR empty */
2:	in %dx, %al
	test $0x20, %al
	jz 2b
	sub $5, %dx
	mov %bl, %al
	out %al, %dx
	inc %rsi
	jmp 1b
9:	ret

	.section .rodata
msg_hello:	.asciz "gmvm guest: long mode, device found\n"
msg_done:	.asciz "gmvm guest: done, checksum reported\n"
msg_nodev:	.asciz "gmvm guest: no test device\n"
msg_baddata:	.asciz "gmvm guest: device DATA mismatch\n"
msg_badwl:	.asciz "gmvm guest: unknown workload\n"
msg_baddma:	.asciz "gmvm guest: device DMA refused\n"
msg_badsum:	.asciz "gmvm guest: device checksum differs from mine\n"
