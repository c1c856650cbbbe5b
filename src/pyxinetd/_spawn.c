/*
 * pyxinetd._spawn: start a server with the whole child checklist of docs/spawner.md done
 * in C, in a child that shares the master's memory until it execs (vfork speed), whether
 * or not the server switches user.
 *
 * CPython offers vfork speed only without a credential change (_posixsubprocess falls
 * back to a real fork as soon as uid/gid/groups are asked for, because glibc's set*id
 * wrappers must not run in a vfork child), and cannot set nice or rlimits in the child
 * at all. This module does every step itself, in order:
 *
 *   signals (every disposition to SIG_DFL, empty mask), descriptors (the socket on 0, 1
 *   and 2, everything else closed), setsid, umask, nice, rlimits, setgroups, setgid,
 *   setuid, execve.
 *
 * How the child is made: clone(CLONE_VM | CLONE_VFORK) on a stack of its own, as glibc's
 * and musl's posix_spawn do, rather than vfork(). With vfork() the child runs on the
 * parent's stack, inside the very frame of the function that called vfork(), until it
 * execs; correctness then depends on the compiler treating vfork() as returning twice and
 * on the child never writing to a stack slot the parent will read back (spilled
 * registers, the stack-protector canary check on return, a local the optimiser moved to
 * memory). A separate stack removes that whole class of bugs: the child only ever
 * touches its own stack and the `struct child` it is given. What it still shares with
 * the parent (heap, globals, thread-local storage including errno) is handled
 * explicitly: every array is built before the clone, the child allocates nothing, runs
 * no Python, takes no lock, and writes only the volatile result fields of its struct.
 *
 * Known traps, and what is done about each:
 * - Signal handlers in the child: a handler running there (Python's C handler writes to
 *   the wakeup fd and sets flags in the shared memory) would act on the parent's state.
 *   The parent blocks every signal, glibc's internal ones included (raw rt_sigprocmask:
 *   pthread_sigmask filters those out), before the clone; the child resets every
 *   disposition to SIG_DFL and only then empties its mask.
 * - set*id in a vfork-style child: glibc's setuid() & co. broadcast the change to every
 *   thread of the process through shared state and a signal (SIGSETXID), which must not
 *   happen from a child sharing the parent's memory. The raw syscalls change only the
 *   calling task, which is what is wanted: the child is a single task about to exec.
 * - errno: the child's errno is the parent thread's (same TLS); the child copies the
 *   value into its struct at the failing step, and the parent saves errno right after
 *   the clone.
 * - Compiler optimisation: the result fields are volatile and the child's body is a
 *   separate noinline function reached only through clone(), so nothing is cached
 *   across the point where the parent resumes.
 * - Failure reporting: the child writes errno, the step and (for rlimits) the index of
 *   the limit into its struct and _exit(127)s; CLONE_VFORK resumes the parent only after
 *   the child has exited or exec'd, so the parent reads a settled struct, reaps that
 *   child and raises OSError with `step` (and `rlimit_index`) attributes. A child that
 *   exec'd is never waited for here: the master reaps it.
 *
 * Linux only (clone, close_range, raw credential syscalls); the build is optional and
 * pyxinetd.spawner falls back to its Python-level paths when this module is missing.
 */

#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__hppa__)
#error "the child stack below assumes a stack that grows down"
#endif

/* Raw credential syscalls: the 32-bit-id variants where the plain ones take 16-bit ids. */
#ifdef SYS_setgroups32
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_SETGID SYS_setgid32
#define SYS_SETUID SYS_setuid32
#else
#define SYS_SETGROUPS SYS_setgroups
#define SYS_SETGID SYS_setgid
#define SYS_SETUID SYS_setuid
#endif

/* The kernel's sigset size (glibc's sigset_t is larger than what the kernel accepts). */
#define KERNEL_SIGSET_SIZE ((NSIG - 1) / 8)

/* The child only makes system calls through thin libc wrappers: a few pages suffice. */
#define CHILD_STACK_SIZE (64 * 1024)

/* Steps, in checklist order; the names are those SpawnError uses. */
enum step {
    STEP_NONE = 0,
    STEP_SIGNALS,
    STEP_DESCRIPTORS,
    STEP_SETSID,
    STEP_UMASK,
    STEP_NICE,
    STEP_RLIMIT,
    STEP_SETGROUPS,
    STEP_SETGID,
    STEP_SETUID,
    STEP_EXEC,
    STEP_FORK,           /* the parent could not create the child */
};

static const char *const step_names[] = {
    "", "signals", "descriptors", "setsid", "umask", "nice", "rlimit",
    "setgroups", "setgid", "setuid", "exec", "fork",
};

struct limit {
    int resource;
    struct rlimit value;
};

struct child {
    /* Prepared by the parent before the clone; read-only in the child. */
    const char *path;
    char *const *argv;
    char *const *envp;
    int sock_fd;
    int err_fd;               /* descriptor 2 instead of the socket; -1: the socket */
    int setsid;
    int umask;                /* -1: keep */
    int set_nice;
    int nice;                 /* an increment, as nice(2) */
    const struct limit *limits;
    size_t n_limits;
    int set_groups;
    const gid_t *groups;
    size_t n_groups;
    int set_gid;
    gid_t gid;
    int set_uid;
    uid_t uid;
    /* Written by the child only when a step fails, read by the parent afterwards. */
    volatile int failed_step;
    volatile int failed_errno;
    volatile int failed_index;
};

static void __attribute__((noreturn))
child_fail(struct child *c, enum step step, int index)
{
    c->failed_errno = errno;
    c->failed_index = index;
    c->failed_step = step;
    _exit(127);
}

static void
close_from_3(void)
{
#if defined(SYS_close_range) && !defined(PYXINETD_NO_CLOSE_RANGE)
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
        return;
#endif
    /* Kernels before 5.9: every number below the soft limit (no /proc: it may be absent
       and opendir allocates). */
    struct rlimit rl;
    long top = 1L << 16;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
            && rl.rlim_cur < (rlim_t)INT_MAX)
        top = (long)rl.rlim_cur;
    /* The raw call: glibc's close() is a cancellation point and would touch the
       (shared) thread control block of the parent's thread in a threaded parent. */
    for (long fd = 3; fd < top; fd++)
        syscall(SYS_close, (int)fd);
}

/* Runs in the child, on its own stack, until execve; never returns. */
static int __attribute__((noinline, noreturn))
child_main(void *arg)
{
    struct child *c = (struct child *)arg;

    /* 1. signals: defaults first, then the mask (still all blocked from the parent). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        /* glibc refuses its two internal signals (EINVAL); exec resets their handlers. */
        if (sigaction(sig, &dfl, NULL) < 0 && errno != EINVAL)
            child_fail(c, STEP_SIGNALS, sig);
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        child_fail(c, STEP_SIGNALS, 0);

    /* 2. descriptors: dup2(fd, fd) would keep close-on-exec, and a later dup2 could
       overwrite a source below 3, so sources below 3 are first copied above 2. */
    int src = c->sock_fd;
    if (src < 3) {
        src = fcntl(src, F_DUPFD, 3);
        if (src < 0)
            child_fail(c, STEP_DESCRIPTORS, 0);
    }
    int err = c->err_fd < 0 ? src : c->err_fd;
    if (err < 3) {
        err = fcntl(err, F_DUPFD, 3);
        if (err < 0)
            child_fail(c, STEP_DESCRIPTORS, 2);
    }
    for (int target = 0; target < 3; target++) {
        if (dup2(target == 2 ? err : src, target) < 0)
            child_fail(c, STEP_DESCRIPTORS, target);
    }
    close_from_3();

    /* 3. session */
    if (c->setsid && setsid() < 0)
        child_fail(c, STEP_SETSID, 0);

    /* 4. umask */
    if (c->umask >= 0)
        umask((mode_t)c->umask);

    /* 5-6. nice and limits, while still privileged: lowering nice or raising a hard
       limit needs the privilege the next steps give up. */
    if (c->set_nice) {
        errno = 0;
        int prio = getpriority(PRIO_PROCESS, 0);
        if (prio == -1 && errno != 0)
            child_fail(c, STEP_NICE, 0);
        if (setpriority(PRIO_PROCESS, 0, prio + c->nice) < 0)
            child_fail(c, STEP_NICE, 0);
    }
    for (size_t i = 0; i < c->n_limits; i++) {
        if (setrlimit(c->limits[i].resource, &c->limits[i].value) < 0)
            child_fail(c, STEP_RLIMIT, (int)i);
    }

    /* 7. credentials, raw (see the top of this file), groups before gid before uid. */
    if (c->set_groups && syscall(SYS_SETGROUPS, c->n_groups, c->groups) < 0)
        child_fail(c, STEP_SETGROUPS, 0);
    if (c->set_gid && syscall(SYS_SETGID, c->gid) < 0)
        child_fail(c, STEP_SETGID, 0);
    if (c->set_uid && syscall(SYS_SETUID, c->uid) < 0)
        child_fail(c, STEP_SETUID, 0);

    /* 8. exec */
    execve(c->path, c->argv, c->envp);
    child_fail(c, STEP_EXEC, 0);
}

/* The child's stack: mapped once and reused. Only one child at a time can be on it:
   every call holds the GIL from before the clone until the child has exec'd or exited
   (CLONE_VFORK), after which nothing runs on that stack any more. */
static char *child_stack_top;

static int
ensure_child_stack(void)
{
    if (child_stack_top != NULL)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        page = 4096;
    /* One guard page below the stack, so an overflow faults instead of writing into
       whatever the parent has mapped there. */
    size_t total = CHILD_STACK_SIZE + (size_t)page;
    char *base = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                      -1, 0);
    if (base == MAP_FAILED)
        return -1;
    if (mprotect(base + page, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE) < 0) {
        int saved = errno;
        munmap(base, total);
        errno = saved;
        return -1;
    }
    child_stack_top = base + total;
    return 0;
}

/* Creates the child; returns its pid, or -1 with errno set. */
static pid_t
start_child(struct child *c)
{
    if (ensure_child_stack() < 0)
        return -1;

    unsigned char all[sizeof(sigset_t)], old[sizeof(sigset_t)];
    memset(all, 0xff, sizeof all);
    memset(old, 0, sizeof old);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, all, old, KERNEL_SIGSET_SIZE);

    pid_t pid = clone(child_main, child_stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, c);
    int saved = errno;

    syscall(SYS_rt_sigprocmask, SIG_SETMASK, old, NULL, KERNEL_SIGSET_SIZE);
    errno = saved;
    return pid;
}

/* -- argument conversion (parent side, with the GIL) ----------------------------------- */

/* A NULL-terminated array of pointers into the bytes objects of `seq` (kept alive by the
   returned fast sequence *keep*). */
static char **
bytes_array(PyObject *seq, const char *what, PyObject **keep)
{
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    char **array = PyMem_New(char *, (size_t)n + 1);
    if (array == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s items must be bytes", what);
            goto error;
        }
        char *text;
        if (PyBytes_AsStringAndSize(item, &text, NULL) < 0)  /* ValueError on NUL */
            goto error;
        array[i] = text;
    }
    array[n] = NULL;
    *keep = fast;
    return array;
error:
    PyMem_Free(array);
    Py_DECREF(fast);
    return NULL;
}

/* An id in 0..(id_t)-2; (id_t)-1 means "unchanged" to the kernel and is refused. */
static int
convert_id(PyObject *obj, unsigned int *out, const char *what)
{
    long long value = PyLong_AsLongLong(obj);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value < 0 || value >= (long long)(unsigned int)-1) {
        PyErr_Format(PyExc_ValueError, "%s out of range", what);
        return -1;
    }
    *out = (unsigned int)value;
    return 0;
}

static gid_t *
groups_array(PyObject *seq, size_t *count)
{
    PyObject *fast = PySequence_Fast(seq, "groups must be a sequence of ints");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    gid_t *groups = PyMem_New(gid_t, (size_t)n + 1);  /* + 1: never a zero-size alloc */
    if (groups == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned int gid;
        if (convert_id(PySequence_Fast_GET_ITEM(fast, i), &gid, "group id") < 0) {
            PyMem_Free(groups);
            Py_DECREF(fast);
            return NULL;
        }
        groups[i] = (gid_t)gid;
    }
    Py_DECREF(fast);
    *count = (size_t)n;
    return groups;
}

static struct limit *
limits_array(PyObject *seq, size_t *count)
{
    PyObject *fast = PySequence_Fast(seq, "rlimits must be a sequence of tuples");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    struct limit *limits = PyMem_New(struct limit, (size_t)n + 1);
    if (limits == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int res;
        long long soft, hard;
        /* resource.RLIM_INFINITY is -1 in Python: cast to rlim_t it is RLIM_INFINITY. */
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "iLL;rlimits items are "
                              "(resource, soft, hard)", &res, &soft, &hard)) {
            PyMem_Free(limits);
            Py_DECREF(fast);
            return NULL;
        }
        limits[i].resource = res;
        limits[i].value.rlim_cur = (rlim_t)soft;
        limits[i].value.rlim_max = (rlim_t)hard;
    }
    Py_DECREF(fast);
    *count = (size_t)n;
    return limits;
}

/* OSError (or its errno subclass) carrying `step`, and `rlimit_index` for limits. */
static void
raise_step_error(int err, enum step step, int index)
{
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err));
    if (exc == NULL)
        return;
    PyObject *name = PyUnicode_FromString(step_names[step]);
    PyObject *idx = PyLong_FromLong(step == STEP_RLIMIT ? index : -1);
    if (name != NULL && idx != NULL
            && PyObject_SetAttrString(exc, "step", name) == 0
            && PyObject_SetAttrString(exc, "rlimit_index", idx) == 0)
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_XDECREF(name);
    Py_XDECREF(idx);
    Py_DECREF(exc);
}

PyDoc_STRVAR(spawn_doc,
"spawn(path, argv, envp, sock_fd, *, setsid=True, groups=None, gid=-1, uid=-1,\n"
"      umask=-1, nice=None, rlimits=(), stderr_fd=-1) -> pid\n\n"
"Start `path` with argv/envp (bytes) and sock_fd on descriptors 0, 1 and 2 (stderr_fd,\n"
"when not -1, on 2 instead), after the\n"
"child checklist: signals to default and unblocked, every other descriptor closed,\n"
"setsid, umask, nice (an increment), rlimits ((resource, soft, hard), in order),\n"
"setgroups (when groups is not None), setgid, setuid (-1 = unchanged), execve.\n"
"Returns the pid of a server that exec'd (never waited for here). Raises OSError with\n"
"`step` (and `rlimit_index`) when a step or the exec failed; that child is reaped.");

static PyObject *
spawn(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path", "argv", "envp", "sock_fd", "setsid", "groups", "gid",
                               "uid", "umask", "nice", "rlimits", "stderr_fd", NULL};
    const char *path;
    PyObject *argv_obj, *envp_obj, *groups_obj = Py_None, *nice_obj = Py_None;
    PyObject *rlimits_obj = NULL;
    long long gid = -1, uid = -1;
    int sock_fd, do_setsid = 1, mask = -1, stderr_fd = -1;
    (void)module;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "yOOi|$pOLLiOOi:spawn", keywords, &path,
                                     &argv_obj, &envp_obj, &sock_fd, &do_setsid, &groups_obj,
                                     &gid, &uid, &mask, &nice_obj, &rlimits_obj, &stderr_fd))
        return NULL;
    if (sock_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "sock_fd must be a descriptor");
        return NULL;
    }
    if (mask > 0777) {
        PyErr_SetString(PyExc_ValueError, "umask out of range");
        return NULL;
    }

    struct child c;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.sock_fd = sock_fd;
    c.err_fd = stderr_fd < 0 ? -1 : stderr_fd;
    c.setsid = do_setsid;
    c.umask = mask < 0 ? -1 : mask;

    PyObject *argv_keep = NULL, *envp_keep = NULL, *result = NULL;
    pid_t pid;
    char **argv = NULL, **envp = NULL;
    gid_t *groups = NULL;
    struct limit *limits = NULL;

    /* -1 keeps the id; anything else must be a valid id ((id_t)-1 would mean "keep"
       to the kernel). */
    if (gid < -1 || gid >= (long long)(unsigned int)-1
            || uid < -1 || uid >= (long long)(unsigned int)-1) {
        PyErr_SetString(PyExc_ValueError, "uid or gid out of range");
        return NULL;
    }
    c.set_gid = gid != -1;
    c.gid = (gid_t)gid;
    c.set_uid = uid != -1;
    c.uid = (uid_t)uid;
    if (nice_obj != Py_None) {
        long inc = PyLong_AsLong(nice_obj);
        if (inc == -1 && PyErr_Occurred())
            goto done;
        if (inc < -40 || inc > 40) {  /* the whole range is 40 wide; the kernel clamps */
            PyErr_SetString(PyExc_ValueError, "nice increment out of range");
            goto done;
        }
        c.set_nice = 1;
        c.nice = (int)inc;
    }
    if ((argv = bytes_array(argv_obj, "argv must be a sequence of bytes", &argv_keep)) == NULL)
        goto done;
    if (argv[0] == NULL) {
        PyErr_SetString(PyExc_ValueError, "argv must not be empty");
        goto done;
    }
    if ((envp = bytes_array(envp_obj, "envp must be a sequence of bytes", &envp_keep)) == NULL)
        goto done;
    if (groups_obj != Py_None) {
        if ((groups = groups_array(groups_obj, &c.n_groups)) == NULL)
            goto done;
        c.set_groups = 1;
        c.groups = groups;
    }
    if (rlimits_obj != NULL) {
        if ((limits = limits_array(rlimits_obj, &c.n_limits)) == NULL)
            goto done;
        c.limits = limits;
    }
    c.argv = argv;
    c.envp = envp;

    /* The GIL stays held: no Python thread runs while the child shares our memory, and
       every object the arrays point into stays alive and unchanged. */
    pid = start_child(&c);
    if (pid < 0) {
        raise_step_error(errno, STEP_FORK, 0);
        goto done;
    }
    if (c.failed_step != STEP_NONE) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        raise_step_error(c.failed_errno, (enum step)c.failed_step, c.failed_index);
        goto done;
    }
    result = PyLong_FromLong((long)pid);

done:
    PyMem_Free(argv);
    PyMem_Free(envp);
    PyMem_Free(groups);
    PyMem_Free(limits);
    Py_XDECREF(argv_keep);
    Py_XDECREF(envp_keep);
    return result;
}

/* -- fault signals: the kernel's, and those sent by a process ------------------------- */

/* Installed for SIGSEGV, SIGBUS and the other fault signals (pyxinetd.faultsignals).
   xinetd logs a SIGSEGV sent with kill(1) and goes on serving; Python cannot: a handler
   of its own for a real fault would only set a flag and return to the faulting
   instruction, which faults again, for ever. The kernel tells the two apart: a fault
   has a positive si_code (SEGV_MAPERR, BUS_ADRERR, SI_KERNEL, SYS_SECCOMP...), a signal
   sent by a process has SI_USER, SI_QUEUE, SI_TKILL (zero or negative). A sent one is
   handed to Python's own handling (its recording handler then runs in the loop, as for
   any other signal); errno is kept, as CPython's own handler keeps it, since writing
   the wakeup byte can fail (EAGAIN on a full socket) between a system call and the
   read of its errno in the code interrupted.

   A real fault gets the default action back and is queued again to this thread with
   the kernel's own siginfo (blocked while the handler runs, it is delivered on return,
   so the process dies of it with its core dump and the fault's address). Returning
   alone is not enough: the faulting instruction is not always run again. A seccomp
   SIGSYS (SECCOMP_RET_TRAP) skips the system call and an int3 SIGTRAP resumes after
   the breakpoint: the process would go on, with a system call that never ran. Should
   the queueing fail, raise() still ends it (with SI_TKILL). Async-signal-safe:
   sigaction, raw system calls and PyErr_SetInterruptEx only. */
static void
fault_guard(int sig, siginfo_t *info, void *context)
{
    (void)context;
    int saved_errno = errno;
    if (info != NULL && info->si_code <= 0) {
        PyErr_SetInterruptEx(sig);
        errno = saved_errno;
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (info == NULL
            || syscall(SYS_rt_tgsigqueueinfo, (long)getpid(), (long)syscall(SYS_gettid),
                       (long)sig, info) < 0)
        raise(sig);
    errno = saved_errno;
}

PyDoc_STRVAR(guard_faults_doc,
"guard_faults(signals) -> None\n\n"
"Catch each of `signals` (fault signals whose Python handler is already installed) at\n"
"C level: sent by a process, Python's handler runs; raised by a real fault, the\n"
"default action is taken. OSError when a disposition cannot be set.");

static PyObject *
guard_faults(PyObject *module, PyObject *arg)
{
    (void)module;
    PyObject *fast = PySequence_Fast(arg, "signals must be a sequence of ints");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        long sig = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (sig == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return NULL;
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = fault_guard;
        /* SA_ONSTACK as CPython's own handlers; every other signal blocked meanwhile. */
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigfillset(&sa.sa_mask);
        if (sig <= 0 || sig >= NSIG || sigaction((int)sig, &sa, NULL) < 0) {
            if (sig <= 0 || sig >= NSIG)
                errno = EINVAL;
            Py_DECREF(fast);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    Py_DECREF(fast);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(dumpable_doc,
"dumpable(flag=-1, /)\n--\n\n"
"The process's dumpable flag (prctl PR_GET_DUMPABLE), after setting it to `flag`\n"
"when that is 0 or 1. A change of effective ids clears it, and going back to\n"
"root's does not set it again (pyxinetd.filerights). OSError on failure.");

static PyObject *
dumpable(PyObject *module, PyObject *args)
{
    (void)module;
    int flag = -1;
    if (!PyArg_ParseTuple(args, "|i:dumpable", &flag))
        return NULL;
    if (flag >= 0 && prctl(PR_SET_DUMPABLE, (unsigned long)flag, 0UL, 0UL, 0UL) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    int now = prctl(PR_GET_DUMPABLE, 0UL, 0UL, 0UL, 0UL);
    if (now < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(now);
}

static PyMethodDef spawn_methods[] = {
    {"dumpable", dumpable, METH_VARARGS, dumpable_doc},
    {"spawn", (PyCFunction)(void (*)(void))spawn, METH_VARARGS | METH_KEYWORDS, spawn_doc},
    {"guard_faults", guard_faults, METH_O, guard_faults_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef spawn_module = {
    PyModuleDef_HEAD_INIT,
    "pyxinetd._spawn",
    "The spawner's child checklist in C, in a CLONE_VM|CLONE_VFORK child (and the\n"
    "guard that tells a fault signal sent by a process from a real fault).",
    -1,
    spawn_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__spawn(void)
{
    return PyModule_Create(&spawn_module);
}
