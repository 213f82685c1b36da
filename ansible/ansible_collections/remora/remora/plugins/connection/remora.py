# Copyright (c) remora developers
# MIT OR Apache-2.0 (see the repository's Cargo.toml)

from __future__ import annotations

DOCUMENTATION = r'''
name: remora
short_description: run tasks through remora sessions, surviving broken links
description:
  - Runs each task's commands in a remora session on the host (C(remora invoke HOST --name SESSION)),
    with the module piped on stdin, and copies files with C(remora cp) (checksummed, resumable,
    written under a temporary name and renamed into place).
  - When the link breaks mid-task, the command keeps running on the host; remora reconnects within
    its window and returns the task's real result, so the play goes on and no task runs twice.
  - When the window runs out, the host is UNREACHABLE with remora's message, which names the
    C(remora receive) command that collects the output later.
  - The session is listed by C(remora ls HOST) while the play runs and removed when the
    C(ansible-playbook) run ends (unless O(keep_session) is set, or a command in it is still
    running or left output nobody received, which stays for C(remora receive)).
  - Needs C(remora) on the controller and C(remora-agent) on the host (C(remora install HOST) puts it
    there without root).
author: remora developers (!UNKNOWN)
version_added: 0.1.0
extends_documentation_fragment:
  - connection_pipelining
options:
  remote_addr:
    description: The host to connect to, a name, an address or an ssh_config alias.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_ssh_host
      - name: delegated_vars['ansible_host']
      - name: delegated_vars['ansible_ssh_host']
  port:
    description: The SSH port (passed as C(-o Port=PORT)); ssh_config's Port, else 22, when unset.
    type: int
    ini:
      - section: defaults
        key: remote_port
    env:
      - name: ANSIBLE_REMOTE_PORT
    vars:
      - name: ansible_port
      - name: ansible_ssh_port
    keyword:
      - name: port
  remote_user:
    description: The user to log in as (passed as C(-o User=USER)); ssh_config's User when unset.
    type: str
    ini:
      - section: defaults
        key: remote_user
    env:
      - name: ANSIBLE_REMOTE_USER
    vars:
      - name: ansible_user
      - name: ansible_ssh_user
    keyword:
      - name: remote_user
  remora_executable:
    description: The C(remora) program on the controller, a path or a name looked up on PATH.
    type: str
    default: remora
    ini:
      - section: remora_connection
        key: executable
    env:
      - name: ANSIBLE_REMORA_EXECUTABLE
    vars:
      - name: ansible_remora_executable
  remora_config:
    description: An ssh_config file for remora to read instead of C(~/.ssh/config) (C(remora -F FILE)).
    type: path
    ini:
      - section: remora_connection
        key: config
    env:
      - name: ANSIBLE_REMORA_CONFIG
    vars:
      - name: ansible_remora_config
  session:
    description:
      - The remora session the tasks run in.
      - By default one per host per run of C(ansible-playbook), named C(ansible-PID-HOST-HASH).
    type: str
    env:
      - name: ANSIBLE_REMORA_SESSION
    vars:
      - name: ansible_remora_session
  reconnect_for:
    description:
      - How long remora keeps reconnecting after the link breaks (C(remora --reconnect-for)), such as
        V(90s), V(4m) or V(0) for not at all. remora's own default (4 minutes) when unset.
    type: str
    ini:
      - section: remora_connection
        key: reconnect_for
    env:
      - name: ANSIBLE_REMORA_RECONNECT_FOR
    vars:
      - name: ansible_remora_reconnect_for
  no_reuse:
    description: Connect on its own for every call, without remora's connection holder (C(remora --no-reuse)).
    type: bool
    default: false
    ini:
      - section: remora_connection
        key: no_reuse
    env:
      - name: ANSIBLE_REMORA_NO_REUSE
    vars:
      - name: ansible_remora_no_reuse
  keep_session:
    description: Leave the session on the host when the run ends, for inspection with C(remora ls) and C(remora jobs).
    type: bool
    default: false
    ini:
      - section: remora_connection
        key: keep_session
    env:
      - name: ANSIBLE_REMORA_KEEP_SESSION
    vars:
      - name: ansible_remora_keep_session
  timeout:
    description: How long to wait for the become prompt or its success marker, in seconds.
    type: int
    default: 10
    ini:
      - section: defaults
        key: timeout
    env:
      - name: ANSIBLE_TIMEOUT
    vars:
      - name: ansible_timeout
'''

EXAMPLES = r'''
# inventory (INI)
# [web]
# web01 ansible_host=10.0.4.11 ansible_user=ops
# web02
#
# [web:vars]
# ansible_connection=remora.remora.remora
# ansible_remora_reconnect_for=10m
# ansible_pipelining=true

# or on the command line
# ansible-playbook -c remora.remora.remora -i hosts.ini site.yml
'''

import errno
import fcntl
import hashlib
import json
import multiprocessing
import os
import re
import selectors
import shlex
import subprocess
import sys
import tempfile
import time

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

# remora exits 255 when it could not reach the host or gave up on the link (like ssh).
EXIT_CONNECTION = 255
# remora's own status lines on stderr while it reconnects; shown at -vv, not in the task's stderr.
STATUS_LINE = re.compile(br'^remora: [^\n]*: (link lost|resumed after|gave up reconnecting)[^\n]*\n?', re.MULTILINE)
# Characters a session name may hold; anything else in a host name becomes '_'.
NAME_UNSAFE = re.compile(r'[^A-Za-z0-9._-]')
# Bound on the reaper's calls to remora, so a dead host never keeps it forever.
REAP_CALL_TIMEOUT = 60


def controller_pid():
    """The pid of the ansible-playbook (or ansible) process this task runs for.

    Tasks run in forked worker processes whose parent is the controller; meta tasks such as
    reset_connection run in the controller itself.
    """
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else os.getpid()


def process_start(pid):
    """The start time of a process (clock ticks since boot), so that a reused pid is not the same run."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as stat:
            fields = stat.read().rsplit(b')', 1)[1].split()
        return to_text(fields[19])
    except (OSError, IndexError):
        return '0'


def run_dir(pid):
    """A private directory for this controller run: the sessions it used, whether a reaper runs."""
    start = process_start(pid)
    base = os.path.join(tempfile.gettempdir(), 'remora-ansible-%d' % os.getuid())
    path = os.path.join(base, '%d-%s' % (pid, start))
    for directory in (base, path):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(directory)
        if not os.path.isdir(directory) or os.path.islink(directory) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise AnsibleError('%s is not a private directory of uid %d; remove it and run again' % (directory, os.getuid()))
    return path, start


class Connection(ConnectionBase):
    """Tasks through remora sessions."""

    transport = 'remora.remora.remora'
    has_pipelining = True
    has_tty = False

    def __init__(self, *args, **kwargs):
        super(Connection, self).__init__(*args, **kwargs)
        self._session = None

    # --- the remora command line ---------------------------------------------------------

    def _host(self):
        return self.get_option('remote_addr')

    def _base_args(self):
        """remora and the options every call takes, before the verb."""
        args = [self.get_option('remora_executable')]
        config = self.get_option('remora_config')
        if config:
            args += ['-F', config]
        port = self.get_option('port')
        if port:
            args += ['-o', 'Port=%d' % int(port)]
        user = self.get_option('remote_user')
        if user:
            args += ['-o', 'User=%s' % user]
        window = self.get_option('reconnect_for')
        if window is not None and to_text(window) != '':
            args += ['--reconnect-for', to_text(window)]
        if self.get_option('no_reuse'):
            args.append('--no-reuse')
        return args

    def _session_name(self):
        if self._session is None:
            name = self.get_option('session')
            if not name:
                pid = controller_pid()
                host = self._host()
                digest = hashlib.sha256(to_bytes('%s %s %s' % (pid, process_start(pid), host))).hexdigest()[:8]
                name = 'ansible-%d-%s-%s' % (pid, NAME_UNSAFE.sub('_', host)[:32], digest)
            self._session = name
        return self._session

    def _spawn(self, args):
        """Starts remora with pipes, in its own session: it never asks on the controller's terminal."""
        display.vvv(u'REMORA: %s' % to_text(' '.join(shlex.quote(a) for a in args)), host=self._host())
        try:
            return subprocess.Popen(
                [to_bytes(a, errors='surrogate_or_strict') for a in args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EACCES):
                raise AnsibleError(
                    'cannot run %s (%s): install remora on the controller (cargo install --path cli) or set '
                    'ansible_remora_executable; then put the agent on the host with `remora install %s`'
                    % (args[0], to_native(e.strerror), self._host()))
            raise

    def _failure(self, rc, stderr, what):
        """The error for a remora call that failed: UNREACHABLE when remora could not reach the host."""
        lines = [line for line in to_text(stderr, errors='surrogate_or_replace').splitlines() if line.strip()]
        message = lines[-1] if lines else '%s exited with status %d' % (self.get_option('remora_executable'), rc)
        if rc == EXIT_CONNECTION and message.startswith('remora: '):
            return AnsibleConnectionFailure(self._with_own_options(message))
        return AnsibleError('%s failed: %s' % (what, message))

    def _with_own_options(self, message):
        """remora's message with the `remora receive ...` it names spelled with this plugin's
        program and options (-F, -o Port=, -o User=), so that it can be pasted as it is."""
        own = [a for a in self._base_args() if a not in ('--no-reuse',)]
        if '--reconnect-for' in own:
            at = own.index('--reconnect-for')
            del own[at:at + 2]
        return message.replace('`remora receive ', '`%s receive ' % ' '.join(shlex.quote(a) for a in own))

    # --- the connection API --------------------------------------------------------------

    def _connect(self):
        if not self._connected:
            display.vvv(u'REMORA SESSION %s ON %s' % (self._session_name(), self._host()), host=self._host())
            if not self.get_option('keep_session'):
                self._register_for_removal()
            self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=True):
        """Runs `cmd` in the session through `sh -c`, `in_data` on its stdin; (rc, stdout, stderr)."""
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        args = self._base_args() + ['invoke', self._host(), '--name', self._session_name(), '--',
                                    'sh -c %s' % shlex.quote(to_text(cmd))]
        process = self._spawn(args)
        early_out, early_err = b'', b''
        if sudoable and self.become and self.become.expect_prompt():
            early_out, early_err = self._answer_become_prompt(process)
        stdout, stderr = process.communicate(in_data)
        stdout, stderr = early_out + stdout, early_err + stderr
        for line in STATUS_LINE.finditer(stderr):
            display.vv(to_text(line.group(0).rstrip()), host=self._host())
        stderr = STATUS_LINE.sub(b'', stderr)
        if process.returncode == EXIT_CONNECTION:
            failure = self._failure(process.returncode, stderr, 'remora invoke')
            if isinstance(failure, AnsibleConnectionFailure):
                raise failure
        return process.returncode, stdout, stderr

    def _answer_become_prompt(self, process):
        """Waits for the become plugin's prompt or success marker and sends the password, like the
        ssh plugin. Returns the output read meanwhile, prompt and marker lines taken out."""
        selector = selectors.DefaultSelector()
        streams = {process.stdout: b'', process.stderr: b''}
        for stream in streams:
            fcntl.fcntl(stream, fcntl.F_SETFL, fcntl.fcntl(stream, fcntl.F_GETFL) | os.O_NONBLOCK)
            selector.register(stream, selectors.EVENT_READ)
        timeout = self.get_option('timeout')
        deadline = time.monotonic() + timeout
        try:
            while True:
                seen = streams[process.stdout] + streams[process.stderr]
                if self.become.check_success(seen):
                    break
                if self.become.check_password_prompt(seen):
                    password = self.become.get_option('become_pass', playcontext=self._play_context)
                    if not password:
                        raise AnsibleError('Missing %s password' % self.become.name)
                    process.stdin.write(to_bytes(password, errors='surrogate_or_strict') + b'\n')
                    process.stdin.flush()
                    break
                events = selector.select(max(0.0, deadline - time.monotonic()))
                if not events:
                    self._stop(process)
                    raise AnsibleError('timeout (%ds) waiting for the privilege escalation prompt on %s: %s'
                                       % (timeout, self._host(), to_native(seen)))
                for key, _mask in events:
                    chunk = key.fileobj.read()
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    streams[key.fileobj] += chunk
                if not selector.get_map():
                    break
        finally:
            selector.close()
            for stream in streams:
                fcntl.fcntl(stream, fcntl.F_SETFL, fcntl.fcntl(stream, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return self._without_become_lines(streams[process.stdout]), self._without_become_lines(streams[process.stderr])

    def _without_become_lines(self, data):
        prompt = getattr(self.become, 'prompt', None)
        lines = data.splitlines(True)
        kept = [line for line in lines
                if not self.become.check_success(line) and not (prompt and self.become.check_password_prompt(line))]
        return b''.join(kept)

    @staticmethod
    def _stop(process):
        process.kill()
        process.communicate()

    def _copy(self, args, what):
        process = self._spawn(args)
        stderr = process.communicate(b'')[1]
        if process.returncode != 0:
            raise self._failure(process.returncode, stderr, what)

    def _remote(self, path):
        return '%s:%s' % (self._host(), path)

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        display.vvv(u'PUT %s TO %s' % (in_path, out_path), host=self._host())
        if not os.path.exists(to_bytes(in_path, errors='surrogate_or_strict')):
            raise AnsibleFileNotFound('file or module does not exist: %s' % to_native(in_path))
        self._copy(self._base_args() + ['cp', '--name', self._session_name(), '--', in_path, self._remote(out_path)],
                   'remora cp to %s' % out_path)

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        display.vvv(u'FETCH %s TO %s' % (in_path, out_path), host=self._host())
        self._copy(self._base_args() + ['cp', '--name', self._session_name(), '--', self._remote(in_path), out_path],
                   'remora cp from %s' % in_path)

    def reset(self):
        """meta: reset_connection: the session goes, the next task gets a new shell."""
        if self.get_option('keep_session'):
            return
        process = self._spawn(self._base_args() + ['rm', self._host(), '--name', self._session_name(), '--yes'])
        stderr = process.communicate(b'')[1]
        if process.returncode != 0:
            display.vv(u'remora rm: %s' % to_text(stderr).strip(), host=self._host())
        self._connected = False

    def close(self):
        """Called after every task: the session stays for the next one (it goes when the run ends)."""
        self._connected = False

    # --- removal at the end of the run -----------------------------------------------------

    def _register_for_removal(self):
        """Records the session in this run's directory and, once per run, starts the reaper that
        removes the recorded sessions when the controller exits."""
        pid = controller_pid()
        directory, start = run_dir(pid)
        entry = json.dumps({'args': self._base_args(), 'host': self._host(), 'session': self._session_name()})
        fd = os.open(os.path.join(directory, 'sessions'), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, to_bytes(entry + '\n'))
        finally:
            os.close(fd)
        try:
            os.close(os.open(os.path.join(directory, 'reaper'), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), '--reap', directory, str(pid), start],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )


def wait_for_exit(pid, start):
    """Returns once process `pid` (started at `start`) has ended."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            if process_start(pid) == start:
                selector = selectors.DefaultSelector()
                selector.register(fd, selectors.EVENT_READ)
                selector.select()
                selector.close()
        finally:
            os.close(fd)
        return
    while process_start(pid) == start:
        time.sleep(1)


def removable(listing):
    """Whether a session from `remora ls --json` can go: nothing running or queued, and no output
    that nobody received (a controller killed mid-task leaves both for `remora receive`)."""
    return (listing.get('commands_running', 0) == 0 and listing.get('commands_queued', 0) == 0
            and listing.get('unacked_bytes', 0) == 0)


def reap(directory, pid, start):
    """The reaper: after the controller's end, removes each session the run used that can go."""
    wait_for_exit(pid, start)
    path = os.path.join(directory, 'sessions')
    seen = set()
    try:
        with open(path) as entries:
            lines = entries.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        entry = json.loads(line)
        key = (tuple(entry['args']), entry['host'], entry['session'])
        if key in seen:
            continue
        seen.add(key)
        base, host, name = entry['args'], entry['host'], entry['session']
        try:
            listed = subprocess.run(base + ['ls', host, '--name', name, '--json'], capture_output=True,
                                    stdin=subprocess.DEVNULL, timeout=REAP_CALL_TIMEOUT, check=False)
            sessions = json.loads(listed.stdout or b'[]')
            if sessions and all(removable(s) for s in sessions):
                subprocess.run(base + ['rm', host, '--name', name, '--yes'], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=REAP_CALL_TIMEOUT, check=False)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            continue
    for name in ('sessions', 'reaper'):
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass


if __name__ == '__main__' and len(sys.argv) == 5 and sys.argv[1] == '--reap':
    reap(sys.argv[2], int(sys.argv[3]), sys.argv[4])
