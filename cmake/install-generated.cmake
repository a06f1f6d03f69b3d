# Run by `cmake --install` (component daemon; cmake/RecoverydInstall.cmake
# sets the RD_* variables before including this file). It installs what
# names the install's own paths, computed here from the prefix given at
# install time (`cmake --install build --prefix DIR` works as the configured
# prefix does):
#   SYSCONFDIR/recoveryd/recoveryd.yaml   deploy/recoveryd.yaml with
#       storage.data_dir, plugins.dir, policies.dir and server.ui_dir set to
#       the installed paths
#   SYSCONFDIR/recoveryd/policies/*.lua   the Lua policies (editable; SIGHUP reloads)
#   RD_UNIT_DIR/recoveryd.service         deploy/recoveryd.service.in, paths filled in
# SYSCONFDIR and LOCALSTATEDIR follow GNUInstallDirs: /etc and /var for the
# prefixes / and /usr, /etc/opt/P and /var/opt/P for /opt/P, PREFIX/etc and
# PREFIX/var otherwise; an absolute CMAKE_INSTALL_SYSCONFDIR (or
# LOCALSTATEDIR) is taken as it is.

function(rd_abs out dir special)
  if(IS_ABSOLUTE "${dir}")
    set(p "${dir}")
  elseif(special AND (CMAKE_INSTALL_PREFIX STREQUAL "/" OR CMAKE_INSTALL_PREFIX STREQUAL "/usr"))
    set(p "/${dir}")
  elseif(special AND CMAKE_INSTALL_PREFIX MATCHES "^/opt/(.*)")
    set(p "/${dir}/opt/${CMAKE_MATCH_1}")
  else()
    set(p "${CMAKE_INSTALL_PREFIX}/${dir}")
  endif()
  string(REGEX REPLACE "/+" "/" p "${p}")
  string(REGEX REPLACE "(.)/$" "\\1" p "${p}")
  set(${out} "${p}" PARENT_SCOPE)
endfunction()

# Made in a directory of this destination's own: two installs of one build
# at once (the tests' cmake --install and cpack) do not share a file.
string(MD5 RD_DEST_HASH "$ENV{DESTDIR}|${CMAKE_INSTALL_PREFIX}")
set(RD_GEN "${RD_GEN}/${RD_DEST_HASH}")

rd_abs(RD_ETC "${RD_SYSCONFDIR}" ON)
rd_abs(RD_VAR "${RD_LOCALSTATEDIR}" ON)
rd_abs(RD_BINDIR_ABS "${RD_BINDIR}" OFF)
rd_abs(RD_PLUGINS_ABS "${RD_PLUGINSDIR}" OFF)
rd_abs(RD_UNIT_ABS "${RD_UNIT_DIR}" OFF)
rd_abs(RD_SYSUSERS_ABS "${RD_SYSUSERS_DIR}" OFF)
set(RD_CONFDIR "${RD_ETC}/recoveryd")
set(RD_BIN "${RD_BINDIR_ABS}/recoveryd")
set(RD_SYSUSERS_FILE "${RD_SYSUSERS_ABS}/recoveryd.conf")
set(RD_DATA_DIR "${RD_VAR}/lib/recoveryd")
# The dashboard's files: the top CMakeLists.txt installs ui/ there.
rd_abs(RD_UI_ABS "share/recoveryd/ui" OFF)

# The config: every replacement must hit, or deploy/recoveryd.yaml changed
# under this script and the install stops saying which.
file(READ "${RD_SRC}/deploy/recoveryd.yaml" yaml)
foreach(pair
    "\n  data_dir: \\.\\./var( +)#[^\n]*|\n  data_dir: ${RD_DATA_DIR}\\1# raft log, snapshots and checkpoints live here"
    "\n  dir: \\.\\./build/plugins( +)#|\n  dir: ${RD_PLUGINS_ABS}\\1#"
    "file stem: \\.\\./build/plugins/|file stem: ${RD_PLUGINS_ABS}/"
    "\n  dir: \\.\\./policies( +)#|\n  dir: ${RD_CONFDIR}/policies\\1#"
    "\n  ui_dir: \\.\\./ui( +)#|\n  ui_dir: ${RD_UI_ABS}\\1#")
  string(FIND "${pair}" "|" bar)
  string(SUBSTRING "${pair}" 0 ${bar} from)
  math(EXPR bar "${bar} + 1")
  string(SUBSTRING "${pair}" ${bar} -1 to)
  if(NOT yaml MATCHES "${from}")
    message(FATAL_ERROR "deploy/recoveryd.yaml: no line matches '${from}': "
      "update cmake/install-generated.cmake to the file's new shape")
  endif()
  string(REGEX REPLACE "${from}" "${to}" yaml "${yaml}")
endforeach()
set(header "# Installed by `cmake --install` (make install, the Debian package):
# deploy/recoveryd.yaml with storage.data_dir, plugins.dir, policies.dir and
# server.ui_dir set to the installed paths (the systemd unit passes --data-dir
# /var/lib/recoveryd, its StateDirectory). recoveryd(8); every key:
# docs/configuration.md.
#
")
file(WRITE "${RD_GEN}/recoveryd.yaml" "${header}${yaml}")

set(RD_SYSUSERS_FILE "${RD_SYSUSERS_FILE}")
configure_file("${RD_SRC}/deploy/recoveryd.service.in" "${RD_GEN}/recoveryd.service" @ONLY)

file(INSTALL DESTINATION "${RD_CONFDIR}" TYPE FILE FILES "${RD_GEN}/recoveryd.yaml")
file(GLOB policies "${RD_SRC}/policies/*.lua")
file(INSTALL DESTINATION "${RD_CONFDIR}/policies" TYPE FILE FILES ${policies})
file(INSTALL DESTINATION "${RD_UNIT_ABS}" TYPE FILE FILES "${RD_GEN}/recoveryd.service")
