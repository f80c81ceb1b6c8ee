/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The boot-sector guest of the QEMU tests: 512 bytes the BIOS loads at
 * 0x7c00.  It enables A20, enters 32-bit protected mode with flat segments
 * and then rewrites a counter in every page of a RAM range, forever:
 *
 *   page i of the range:  word 0 = pass counter c,  word 1023 = c ^ i,
 *                         every other word zero (never written)
 *
 * Before a page is rewritten to c + 1 it is checked to still hold c, so the
 * guest verifies its own memory on every pass (a page lost or torn by a
 * migration shows as "BAD <address>" on the serial port, then the guest
 * halts).  After each pass it prints "P <counter>" (hex).  The first pass
 * after boot adopts what page 0 holds (a reboot keeps RAM), checks nothing
 * and writes page 0's counter + 1 everywhere.
 *
 * The range and a busy delay per page come from a parameter block the test
 * patches into the image (see PARAM_* below and tests/qemu/guest.h).
 */
#define COM1 0x3f8
#define PARAM_OFF 0x1e0	/* magic "WPMG", first page, page count, delay */

	.code16
	.text
	.globl _start
_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %ss
	movw $0x7c00, %sp
	inb $0x92, %al		/* fast A20 */
	orb $2, %al
	andb $0xfe, %al
	outb %al, $0x92
	lgdt gdt_desc
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmp $0x08, $pmode

	.code32
pmode:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl $0x7c00, %esp
	movl param_first, %ebx
	shll $12, %ebx		/* ebx = base address */
	movl (%ebx), %ebp
	incl %ebp		/* ebp = counter written by this pass */
	xorl %esi, %esi		/* first pass: no check */
	jmp pass

next_pass:
	movl %ebp, %eax
	call print_pass
	movl $1, %esi
	incl %ebp
pass:
	xorl %ecx, %ecx		/* ecx = page index */
	movl %ebx, %edi
page:
	testl %esi, %esi
	jz write
	leal -1(%ebp), %eax	/* expected: c = ebp - 1 */
	cmpl %eax, (%edi)
	jne bad
	xorl %ecx, %eax
	cmpl %eax, 4092(%edi)
	jne bad
write:
	movl %ebp, %eax
	xorl %ecx, %eax
	movl %eax, 4092(%edi)
	movl %ebp, (%edi)
	movl param_delay, %edx
1:	testl %edx, %edx
	jz 2f
	decl %edx
	jmp 1b
2:	addl $4096, %edi
	incl %ecx
	cmpl param_count, %ecx
	jb page
	jmp next_pass

bad:
	movl $'B' | 'A' << 8 | 'D' << 16 | ' ' << 24, %eax
	call putc4
	movl %edi, %eax
	call print_hex
	cli
3:	hlt
	jmp 3b

/* "P xxxxxxxx\n" with eax */
print_pass:
	pushl %eax
	movl $'P' | ' ' << 8, %eax
	call putc
	shrl $8, %eax
	call putc
	popl %eax
print_hex:			/* eax as 8 hex digits and a newline */
	movl $8, %edx
4:	roll $4, %eax
	pushl %eax
	andb $15, %al
	addb $'0', %al
	cmpb $'9', %al
	jbe 5f
	addb $'a' - '9' - 1, %al
5:	call putc
	popl %eax
	decl %edx
	jnz 4b
	movb $'\n', %al
	jmp putc

putc4:				/* the four bytes of eax, low first */
	movl $4, %edx
6:	call putc
	shrl $8, %eax
	decl %edx
	jnz 6b
	ret

putc:				/* al to COM1, waiting for the transmitter */
	pushl %eax
	pushl %edx
	movw $COM1 + 5, %dx
7:	inb %dx, %al
	testb $0x20, %al
	jz 7b
	movl 4(%esp), %eax
	movw $COM1, %dx
	outb %al, %dx
	popl %edx
	popl %eax
	ret

	.p2align 3
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: code, flat 4 GiB */
	.quad 0x00cf92000000ffff	/* 0x10: data, flat 4 GiB */
gdt_desc:
	.word gdt_desc - gdt - 1
	.long gdt

	.org PARAM_OFF
param_magic:	.ascii "WPMG"
param_first:	.long 256	/* page number of the range's first page (1 MiB) */
param_count:	.long 16384	/* pages in the range */
param_delay:	.long 0		/* busy loop iterations after each page */
	.org 510
	.word 0xaa55
