// build: -static
/*
 * regs: holds known values in registers across whatever is done to the
 * process (dump and restore), and checks them in assembly: r12-r15, the
 * flags' DF stays clear, xmm8-xmm15, the upper halves of ymm8-ymm15 (AVX),
 * zmm8-zmm15's upper halves, zmm16-zmm31 and the opmasks k1-k7 (AVX-512),
 * and MXCSR.
 *
 *   regs OUTFILE
 *
 * Loads the values, says "ready" (from the assembly, once they are all in
 * place), spins in assembly until SIGUSR1 sets a flag (signal
 * delivery saves and restores every register), then compares each
 * register with its value and writes PASS or "FAIL: <register>" to
 * OUTFILE.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile int stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

/* 64-byte patterns, one per vector register 8-31 (the low 16 bytes are
 * the xmm part, the low 32 the ymm part); pat[0] holds the opmasks' values
 * (k1-k7 from byte 8), pat[1] those of r12-r15. */
static uint8_t pat[32][64] __attribute__((aligned(64)));
static uint8_t got[32][64] __attribute__((aligned(64)));
static uint32_t mxcsr_got;
/* /dev/null, which becomes stdout right after "ready" (written from the
 * assembly, once every register holds its value). */
static int null_fd;
__asm__(".pushsection .rodata\nready_msg: .ascii \"ready\\n\"\n.popsection\n");

#define MXCSR_VALUE 0x1fa0 /* round toward +inf, all exceptions masked */

static int verdict(const char *path, const char *msg)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0)
			return 2;
		close(fd);
	}
	return strcmp(msg, "PASS\n") == 0 ? 0 : 1;
}

/* Loads r12-r15, xmm8-15 and MXCSR, spins until `stop`, stores them. */
static void spin_sse(void)
{
	uint32_t mx = MXCSR_VALUE;
	__asm__ volatile(
		"ldmxcsr %[mx]\n"
		"movdqa 8*64(%[p]), %%xmm8\n"
		"movdqa 9*64(%[p]), %%xmm9\n"
		"movdqa 10*64(%[p]), %%xmm10\n"
		"movdqa 11*64(%[p]), %%xmm11\n"
		"movdqa 12*64(%[p]), %%xmm12\n"
		"movdqa 13*64(%[p]), %%xmm13\n"
		"movdqa 14*64(%[p]), %%xmm14\n"
		"movdqa 15*64(%[p]), %%xmm15\n"
		"mov 1*64+0(%[p]), %%r12\n"
		"mov 1*64+8(%[p]), %%r13\n"
		"mov 1*64+16(%[p]), %%r14\n"
		"mov 1*64+24(%[p]), %%r15\n"
		"mov $1, %%eax\n"
		"mov $1, %%edi\n"
		"lea ready_msg(%%rip), %%rsi\n"
		"mov $6, %%edx\n"
		"syscall\n"
		"mov $33, %%eax\n"
		"mov %[null], %%edi\n"
		"mov $1, %%esi\n"
		"syscall\n"
		"1: cmpl $0, %[stop]\n"
		"je 1b\n"
		"movdqa %%xmm8, 8*64(%[o])\n"
		"movdqa %%xmm9, 9*64(%[o])\n"
		"movdqa %%xmm10, 10*64(%[o])\n"
		"movdqa %%xmm11, 11*64(%[o])\n"
		"movdqa %%xmm12, 12*64(%[o])\n"
		"movdqa %%xmm13, 13*64(%[o])\n"
		"movdqa %%xmm14, 14*64(%[o])\n"
		"movdqa %%xmm15, 15*64(%[o])\n"
		"mov %%r12, 1*64+0(%[o])\n"
		"mov %%r13, 1*64+8(%[o])\n"
		"mov %%r14, 1*64+16(%[o])\n"
		"mov %%r15, 1*64+24(%[o])\n"
		"stmxcsr %[mxo]\n"
		: [mxo] "=m"(mxcsr_got)
		: [mx] "m"(mx), [p] "r"(pat), [o] "r"(got),
		  [stop] "m"(stop), [null] "m"(null_fd)
		: "rax", "rcx", "rdx", "rsi", "rdi", "r11", "r12", "r13", "r14", "r15", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
		  "xmm14", "xmm15", "memory", "cc");
}

/* The same with the whole of ymm8-15 (AVX). */
__attribute__((target("avx"))) static void spin_avx(void)
{
	uint32_t mx = MXCSR_VALUE;
	__asm__ volatile(
		"ldmxcsr %[mx]\n"
		"vmovdqa 8*64(%[p]), %%ymm8\n"
		"vmovdqa 9*64(%[p]), %%ymm9\n"
		"vmovdqa 10*64(%[p]), %%ymm10\n"
		"vmovdqa 11*64(%[p]), %%ymm11\n"
		"vmovdqa 12*64(%[p]), %%ymm12\n"
		"vmovdqa 13*64(%[p]), %%ymm13\n"
		"vmovdqa 14*64(%[p]), %%ymm14\n"
		"vmovdqa 15*64(%[p]), %%ymm15\n"
		"mov 1*64+0(%[p]), %%r12\n"
		"mov 1*64+8(%[p]), %%r13\n"
		"mov 1*64+16(%[p]), %%r14\n"
		"mov 1*64+24(%[p]), %%r15\n"
		"mov $1, %%eax\n"
		"mov $1, %%edi\n"
		"lea ready_msg(%%rip), %%rsi\n"
		"mov $6, %%edx\n"
		"syscall\n"
		"mov $33, %%eax\n"
		"mov %[null], %%edi\n"
		"mov $1, %%esi\n"
		"syscall\n"
		"1: cmpl $0, %[stop]\n"
		"je 1b\n"
		"vmovdqa %%ymm8, 8*64(%[o])\n"
		"vmovdqa %%ymm9, 9*64(%[o])\n"
		"vmovdqa %%ymm10, 10*64(%[o])\n"
		"vmovdqa %%ymm11, 11*64(%[o])\n"
		"vmovdqa %%ymm12, 12*64(%[o])\n"
		"vmovdqa %%ymm13, 13*64(%[o])\n"
		"vmovdqa %%ymm14, 14*64(%[o])\n"
		"vmovdqa %%ymm15, 15*64(%[o])\n"
		"mov %%r12, 1*64+0(%[o])\n"
		"mov %%r13, 1*64+8(%[o])\n"
		"mov %%r14, 1*64+16(%[o])\n"
		"mov %%r15, 1*64+24(%[o])\n"
		"stmxcsr %[mxo]\n"
		"vzeroupper\n"
		: [mxo] "=m"(mxcsr_got)
		: [mx] "m"(mx), [p] "r"(pat), [o] "r"(got),
		  [stop] "m"(stop), [null] "m"(null_fd)
		: "rax", "rcx", "rdx", "rsi", "rdi", "r11", "r12", "r13", "r14", "r15", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
		  "xmm14", "xmm15", "memory", "cc");
}

/* zmm8-31 whole, and k1-k7 (AVX-512). */
__attribute__((target("avx512f,avx512bw"))) static void spin_avx512(void)
{
	uint32_t mx = MXCSR_VALUE;
	__asm__ volatile(
		"ldmxcsr %[mx]\n"
		"vmovdqa64 8*64(%[p]), %%zmm8\n"
		"vmovdqa64 9*64(%[p]), %%zmm9\n"
		"vmovdqa64 10*64(%[p]), %%zmm10\n"
		"vmovdqa64 11*64(%[p]), %%zmm11\n"
		"vmovdqa64 12*64(%[p]), %%zmm12\n"
		"vmovdqa64 13*64(%[p]), %%zmm13\n"
		"vmovdqa64 14*64(%[p]), %%zmm14\n"
		"vmovdqa64 15*64(%[p]), %%zmm15\n"
		"vmovdqa64 16*64(%[p]), %%zmm16\n"
		"vmovdqa64 17*64(%[p]), %%zmm17\n"
		"vmovdqa64 18*64(%[p]), %%zmm18\n"
		"vmovdqa64 19*64(%[p]), %%zmm19\n"
		"vmovdqa64 20*64(%[p]), %%zmm20\n"
		"vmovdqa64 21*64(%[p]), %%zmm21\n"
		"vmovdqa64 22*64(%[p]), %%zmm22\n"
		"vmovdqa64 23*64(%[p]), %%zmm23\n"
		"vmovdqa64 24*64(%[p]), %%zmm24\n"
		"vmovdqa64 25*64(%[p]), %%zmm25\n"
		"vmovdqa64 26*64(%[p]), %%zmm26\n"
		"vmovdqa64 27*64(%[p]), %%zmm27\n"
		"vmovdqa64 28*64(%[p]), %%zmm28\n"
		"vmovdqa64 29*64(%[p]), %%zmm29\n"
		"vmovdqa64 30*64(%[p]), %%zmm30\n"
		"vmovdqa64 31*64(%[p]), %%zmm31\n"
		"kmovq 8(%[p]), %%k1\n"
		"kmovq 16(%[p]), %%k2\n"
		"kmovq 24(%[p]), %%k3\n"
		"kmovq 32(%[p]), %%k4\n"
		"kmovq 40(%[p]), %%k5\n"
		"kmovq 48(%[p]), %%k6\n"
		"kmovq 56(%[p]), %%k7\n"
		"mov 1*64+0(%[p]), %%r12\n"
		"mov 1*64+8(%[p]), %%r13\n"
		"mov 1*64+16(%[p]), %%r14\n"
		"mov 1*64+24(%[p]), %%r15\n"
		"mov $1, %%eax\n"
		"mov $1, %%edi\n"
		"lea ready_msg(%%rip), %%rsi\n"
		"mov $6, %%edx\n"
		"syscall\n"
		"mov $33, %%eax\n"
		"mov %[null], %%edi\n"
		"mov $1, %%esi\n"
		"syscall\n"
		"1: cmpl $0, %[stop]\n"
		"je 1b\n"
		"vmovdqa64 %%zmm8, 8*64(%[o])\n"
		"vmovdqa64 %%zmm9, 9*64(%[o])\n"
		"vmovdqa64 %%zmm10, 10*64(%[o])\n"
		"vmovdqa64 %%zmm11, 11*64(%[o])\n"
		"vmovdqa64 %%zmm12, 12*64(%[o])\n"
		"vmovdqa64 %%zmm13, 13*64(%[o])\n"
		"vmovdqa64 %%zmm14, 14*64(%[o])\n"
		"vmovdqa64 %%zmm15, 15*64(%[o])\n"
		"vmovdqa64 %%zmm16, 16*64(%[o])\n"
		"vmovdqa64 %%zmm17, 17*64(%[o])\n"
		"vmovdqa64 %%zmm18, 18*64(%[o])\n"
		"vmovdqa64 %%zmm19, 19*64(%[o])\n"
		"vmovdqa64 %%zmm20, 20*64(%[o])\n"
		"vmovdqa64 %%zmm21, 21*64(%[o])\n"
		"vmovdqa64 %%zmm22, 22*64(%[o])\n"
		"vmovdqa64 %%zmm23, 23*64(%[o])\n"
		"vmovdqa64 %%zmm24, 24*64(%[o])\n"
		"vmovdqa64 %%zmm25, 25*64(%[o])\n"
		"vmovdqa64 %%zmm26, 26*64(%[o])\n"
		"vmovdqa64 %%zmm27, 27*64(%[o])\n"
		"vmovdqa64 %%zmm28, 28*64(%[o])\n"
		"vmovdqa64 %%zmm29, 29*64(%[o])\n"
		"vmovdqa64 %%zmm30, 30*64(%[o])\n"
		"vmovdqa64 %%zmm31, 31*64(%[o])\n"
		"kmovq %%k1, 8(%[o])\n"
		"kmovq %%k2, 16(%[o])\n"
		"kmovq %%k3, 24(%[o])\n"
		"kmovq %%k4, 32(%[o])\n"
		"kmovq %%k5, 40(%[o])\n"
		"kmovq %%k6, 48(%[o])\n"
		"kmovq %%k7, 56(%[o])\n"
		"mov %%r12, 1*64+0(%[o])\n"
		"mov %%r13, 1*64+8(%[o])\n"
		"mov %%r14, 1*64+16(%[o])\n"
		"mov %%r15, 1*64+24(%[o])\n"
		"stmxcsr %[mxo]\n"
		"vzeroupper\n"
		: [mxo] "=m"(mxcsr_got)
		: [mx] "m"(mx), [p] "r"(pat), [o] "r"(got),
		  [stop] "m"(stop), [null] "m"(null_fd)
		: "rax", "rcx", "rdx", "rsi", "rdi", "r11", "r12", "r13", "r14", "r15", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
		  "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22",
		  "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31",
		  "k1", "k2", "k3", "k4", "k5", "k6", "k7", "memory", "cc");
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	signal(SIGUSR1, on_usr1);
	for (int r = 0; r < 32; r++)
		for (int i = 0; i < 64; i++)
			pat[r][i] = (uint8_t)(r * 37 + i * 11 + 1);
	__builtin_cpu_init();
	int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
	int avx = __builtin_cpu_supports("avx");
	int width = avx512 ? 64 : avx ? 32 : 16;
	int first = 8, last = avx512 ? 31 : 15;
	printf("width %d\n", width);
	fflush(stdout);
	null_fd = open("/dev/null", O_WRONLY);

	if (avx512)
		spin_avx512();
	else if (avx)
		spin_avx();
	else
		spin_sse();

	char msg[64];
	for (int i = 0; i < 4; i++)
		if (((uint64_t *)got[1])[i] != ((uint64_t *)pat[1])[i]) {
			snprintf(msg, sizeof(msg), "FAIL: r%d\n", 12 + i);
			return verdict(argv[1], msg);
		}
	for (int r = first; r <= last; r++)
		if (memcmp(got[r], pat[r], width)) {
			snprintf(msg, sizeof(msg), "FAIL: %cmm%d\n", width == 64 ? 'z' : width == 32 ? 'y' : 'x', r);
			return verdict(argv[1], msg);
		}
	if (avx512)
		for (int k = 1; k < 8; k++)
			if (((uint64_t *)got[0])[k] != ((uint64_t *)pat[0])[k]) {
				snprintf(msg, sizeof(msg), "FAIL: k%d\n", k);
				return verdict(argv[1], msg);
			}
	if (mxcsr_got != MXCSR_VALUE)
		return verdict(argv[1], "FAIL: mxcsr\n");
	return verdict(argv[1], "PASS\n");
}
