# Install and export: find_package(pcache) gives pcache::core, pcache::pmem2, pcache::blockdev,
# pcache::sim and the umbrella pcache::pcache; pkg-config gives pcache.
include(CMakePackageConfigHelpers)

install(TARGETS pcache_core pcache_pmem2 pcache_blockdev pcache_sim pcache
        EXPORT pcacheTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT pcacheTargets NAMESPACE pcache:: FILE pcacheTargets.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/pcache)

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/pcacheConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/pcacheConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/pcache)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/pcacheConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/pcacheConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/pcacheConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/pcache)

# Relocatable pkg-config file: the prefix is derived from the file's own location.
configure_file(${CMAKE_CURRENT_LIST_DIR}/pcache.pc.in ${CMAKE_CURRENT_BINARY_DIR}/pcache.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/pcache.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
