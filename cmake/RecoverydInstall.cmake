# What `cmake --install` (make install, make deb) installs, in two
# components:
#   daemon      recoveryd, its plugins (rd_add_plugin, plugins/CMakeLists.txt),
#               the Lua policies, the default config, the systemd unit and
#               sysusers.d entry, the man page recoveryd(8)
#   plugin-dev  recoveryd/plugin.h (and error.h, which it includes) and
#               recoveryd-plugin.pc, for plugins built outside this tree
# (api/c installs the client library and recoveryctl, components client
# and recoveryctl.) Paths follow GNUInstallDirs; the files that name the
# install's own paths (config, unit) are made at install time by
# cmake/install-generated.cmake, so `cmake --install build --prefix DIR`
# gives a working tree under DIR.
set(RD_PLUGINS_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/recoveryd/plugins")
set(RD_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
  "where recoveryd.service is installed (relative: under the prefix)")
set(RD_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING
  "where the sysusers.d entry is installed (relative: under the prefix)")

install(TARGETS recoveryd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT daemon)
install(FILES ${PROJECT_SOURCE_DIR}/docs/man/recoveryd.8
  DESTINATION ${CMAKE_INSTALL_MANDIR}/man8 COMPONENT daemon)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/recoveryd.sysusers
  DESTINATION ${RD_SYSUSERS_DIR} RENAME recoveryd.conf COMPONENT daemon)
install(CODE "
  set(RD_SRC \"${PROJECT_SOURCE_DIR}\")
  set(RD_GEN \"${PROJECT_BINARY_DIR}/install-generated\")
  set(RD_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(RD_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(RD_LOCALSTATEDIR \"${CMAKE_INSTALL_LOCALSTATEDIR}\")
  set(RD_PLUGINSDIR \"${RD_PLUGINS_INSTALL_DIR}\")
  set(RD_UNIT_DIR \"${RD_SYSTEMD_UNIT_DIR}\")
  set(RD_SYSUSERS_DIR \"${RD_SYSUSERS_DIR}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/install-generated.cmake\")
" COMPONENT daemon)

install(FILES
  ${PROJECT_SOURCE_DIR}/engine/include/recoveryd/plugin.h
  ${PROJECT_SOURCE_DIR}/engine/include/recoveryd/error.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/recoveryd COMPONENT plugin-dev)
# The .pc names its paths relative to its own directory (${pcfiledir}), so
# the same file is right under any prefix.
file(RELATIVE_PATH RD_PC_PREFIX_REL "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" RD_PC_PREFIX_REL "${RD_PC_PREFIX_REL}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/recoveryd-plugin.pc.in
  ${PROJECT_BINARY_DIR}/recoveryd-plugin.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/recoveryd-plugin.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT plugin-dev)
