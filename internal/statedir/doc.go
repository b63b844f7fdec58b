// Package statedir refuses a state directory that another host user could have prepared or can change.
//
// Spillway runs as root and writes, truncates, mounts over and deletes
// paths under its state directory. If another user created that directory,
// or one above it, or can write to either, they can plant a symlink (the
// lock file pointing at /etc/passwd, mnt/NAME pointing at /home) and have
// root follow it. The rule, checked by every command before it uses the
// directory:
//
//   - every directory above the state directory is owned by the caller or
//     by root and is not writable by group or others, unless it is sticky
//     (/tmp): a symlink met on the way is owned by the caller or by root,
//     and the directories it leads to are checked the same way;
//   - the state directory, and each file and directory that spillway keeps
//     in it (the table in layout.go), is owned by the caller, is not a
//     symlink and is not writable by group or others; a file has one link;
//   - the directories that hold sandbox bytes are 0700 (looser read or
//     search bits are taken away, write bits are refused);
//   - the trees inside snapshots, and mounted sandbox roots, keep the
//     owners and modes of their images: of them only the top directory is
//     checked, for being a real directory.
//
// Once this holds, no other user can add, rename or replace anything on the
// path from "/" to any file spillway owns, so opening a trusted path cannot
// be diverted; what a user planted before the directory came under this
// rule is found by the checks, and the leaves that are too many to check
// one by one (blobs) are opened with O_NOFOLLOW. Errors name the path and
// say why, and match errdefs.ErrFailedPrecondition.
package statedir
