/*
 * clock: reads the clocks through the vDSO, dynamically linked, and checks
 * that they carry on whatever is done to the process meanwhile (dump and
 * restore: the monotonic and boot clocks must continue from where they
 * were, which needs a time namespace with the right offsets).
 *
 *   clock OUTFILE [MAX_STEP_MS]
 *
 * Every millisecond or so it reads CLOCK_MONOTONIC, CLOCK_BOOTTIME and
 * CLOCK_REALTIME with clock_gettime (glibc goes to the vDSO), calls the
 * vDSO's __vdso_clock_gettime itself (found through AT_SYSINFO_EHDR), and
 * gettimeofday. It checks that the monotonic and boot clocks never go back
 * nor jump by more than MAX_STEP_MS (default 5000) between two readings,
 * that the vDSO's answer agrees with glibc's, and that gettimeofday agrees
 * with CLOCK_REALTIME. Prints "mono NS" before "ready"; on SIGUSR1 writes
 * PASS or FAIL (the first failure) to OUTFILE and exits 0 or 1.
 */
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

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

typedef int (*vdso_gettime_t)(clockid_t, struct timespec *);

/* __vdso_clock_gettime from the vDSO's dynamic symbol table. */
static vdso_gettime_t vdso_gettime(void)
{
	uintptr_t base = getauxval(AT_SYSINFO_EHDR);
	if (!base)
		return NULL;
	Elf64_Ehdr *eh = (Elf64_Ehdr *)base;
	Elf64_Phdr *ph = (Elf64_Phdr *)(base + eh->e_phoff);
	uintptr_t load = 0;
	Elf64_Dyn *dyn = NULL;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && !load)
			load = base + ph[i].p_offset - ph[i].p_vaddr;
		if (ph[i].p_type == PT_DYNAMIC)
			dyn = (Elf64_Dyn *)(base + ph[i].p_offset);
	}
	if (!dyn)
		return NULL;
	Elf64_Sym *sym = NULL;
	const char *str = NULL;
	uint32_t *hash = NULL;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		if (dyn->d_tag == DT_SYMTAB)
			sym = (Elf64_Sym *)(load + dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_STRTAB)
			str = (const char *)(load + dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_HASH)
			hash = (uint32_t *)(load + dyn->d_un.d_ptr);
	}
	if (!sym || !str || !hash)
		return NULL;
	for (uint32_t i = 0; i < hash[1]; i++)
		if (sym[i].st_name && strcmp(str + sym[i].st_name, "__vdso_clock_gettime") == 0)
			return (vdso_gettime_t)(load + sym[i].st_value);
	return NULL;
}

static int64_t ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int64_t max_step = (argc > 2 ? atoll(argv[2]) : 5000) * 1000000;
	signal(SIGUSR1, on_usr1);
	vdso_gettime_t vgt = vdso_gettime();
	if (!vgt)
		return verdict(argv[1], "FAIL: no __vdso_clock_gettime\n");
	struct timespec m0, b0;
	clock_gettime(CLOCK_MONOTONIC, &m0);
	clock_gettime(CLOCK_BOOTTIME, &b0);
	printf("mono %lld\nready\n", (long long)ns(&m0));
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	char fail[256] = "";
	int64_t prev_m = ns(&m0), prev_b = ns(&b0), steps = 0;
	/* A few readings after SIGUSR1 too: the verdict covers the clocks as
	 * they are when it is asked for (right after a restore, say). */
	int after = 0;
	while (!stop || after++ < 3) {
		struct timespec m, b, r, vm;
		struct timeval tv;
		clock_gettime(CLOCK_MONOTONIC, &m);
		clock_gettime(CLOCK_BOOTTIME, &b);
		clock_gettime(CLOCK_REALTIME, &r);
		vgt(CLOCK_MONOTONIC, &vm);
		gettimeofday(&tv, NULL);
		int64_t dm = ns(&m) - prev_m, db = ns(&b) - prev_b;
		int64_t dv = ns(&vm) - ns(&m);
		int64_t dr = ((int64_t)tv.tv_sec * 1000000 + tv.tv_usec) * 1000 - ns(&r);
		if (!fail[0]) {
			if (dm < 0 || dm > max_step)
				snprintf(fail, sizeof(fail), "FAIL: CLOCK_MONOTONIC stepped %lld ns\n", (long long)dm);
			else if (db < 0 || db > max_step)
				snprintf(fail, sizeof(fail), "FAIL: CLOCK_BOOTTIME stepped %lld ns\n", (long long)db);
			else if (dv < 0 || dv > 1000000000)
				snprintf(fail, sizeof(fail), "FAIL: the vDSO's monotonic clock is %lld ns off\n", (long long)dv);
			else if (dr < -1000000000 || dr > 1000000000)
				snprintf(fail, sizeof(fail), "FAIL: gettimeofday is %lld ns off CLOCK_REALTIME\n", (long long)dr);
		}
		prev_m = ns(&m);
		prev_b = ns(&b);
		steps++;
		struct timespec pause = { 0, 1000000 };
		nanosleep(&pause, NULL);
	}
	if (fail[0])
		return verdict(argv[1], fail);
	if (steps < 2)
		return verdict(argv[1], "FAIL: too few readings\n");
	return verdict(argv[1], "PASS\n");
}
